#!/usr/bin/env python3
"""The cost of `xdpctl trace`: a plain filter before and after the capture
path landed, and the traced program against the plain one, in one run.

    sudo .venv/bin/python benchmarks/trace.py [--before REF] [--repeat N] [--rounds N] [--json]

1. Before/after: benchmarks/actions.py's comparison (the program as REF,
   default `git merge-base HEAD main`, has it and as this tree has it, same
   -D flags, timed side by side; and whether they compile to the same
   instructions). The capture path is compiled in only while a trace runs,
   so this must be 1.00x and "same insns: yes".
2. Traced: the program with -D XDPCTL_TRACE (no rules, count only) against
   the same program without it, through BPF_PROG_TEST_RUN, per frame:
   - "unselected": a trace whose selection takes nothing (its verdict mask
     is empty): what every frame a trace does not want pays;
   - "unsampled": a trace that selects every frame but samples one in 2^32:
     what a frame --sample skips pays;
   - "captured": every frame copied into the ring (60 to 78 bytes), timed
     over 1,500 frames a round with the ring drained between rounds;
   - "ring full": every frame selected and sampled, the ring full (the
     reserve fails and the loss is counted).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import actions  # noqa: E402  (benchmarks/actions.py: the before/after comparison)

from xdpctl.checks import bench  # noqa: E402
from xdpctl.datapath import contract  # noqa: E402
from xdpctl.datapath.program import FilterOptions, filter_program  # noqa: E402
from xdpctl.kernel import libbpf  # noqa: E402
from xdpctl.kernel.compiler import compile_and_load  # noqa: E402
from xdpctl.lifecycle import trace  # noqa: E402
from xdpctl.lifecycle.state import scratch_dir  # noqa: E402

EVERY_VERDICT = (1 << len(contract.VERDICTS)) - 1
EVERY_CLASS = (1 << len(contract.CLASSES)) - 1
EVERY_DECIDER = (1 << len(contract.TRACE_BY)) - 1
CAPTURED_PER_ROUND = 1500  # records of 4 KiB: the 8 MiB ring holds about 2,000


def _config(verdicts: int, sample: int) -> bytes:
    return contract.TRACE_CONFIG.pack(verdicts, EVERY_CLASS, EVERY_DECIDER, contract.TRACE_ANY_SLOT, sample,
                                      contract.TRACE_CAP_MAX, 0, 0, 0)


def _traced(stack: contextlib.ExitStack, config: bytes):
    directory = stack.enter_context(scratch_dir("bench-trace"))
    trace.prepare_maps(directory, config)
    loaded = compile_and_load(filter_program(FilterOptions(), directory, trace_cap=contract.TRACE_CAP_MAX))
    stack.callback(loaded.close)
    ring = libbpf.obj_get(os.path.join(directory, contract.PIN_TRACE_RING))
    stack.callback(os.close, ring)
    return loaded.prog_fd, ring


def traced_costs(repeat: int, rounds: int) -> dict:
    frames = bench.bench_frames()
    with contextlib.ExitStack() as stack:
        plain_dir = stack.enter_context(scratch_dir("bench-plain"))
        plain = compile_and_load(filter_program(FilterOptions(), plain_dir))
        stack.callback(plain.close)
        unselected, _ = _traced(stack, _config(0, 1))
        unsampled, _ = _traced(stack, _config(EVERY_VERDICT, 0xFFFFFFFF))
        full, full_ring = _traced(stack, _config(EVERY_VERDICT, 1))
        captured, ring = _traced(stack, _config(EVERY_VERDICT, 1))
        libbpf.prog_test_run(full, frames["ipv4/udp"], 4000)  # fill its ring for good
        libbpf.prog_test_run(unsampled, frames["ipv4/udp"], 1)  # its one sample: the rest are skipped
        rows = bench.measure(bench.Contender("plain", plain.prog_fd),
                             [bench.Contender("unselected", unselected), bench.Contender("unsampled", unsampled),
                              bench.Contender("ring_full", full)], frames, repeat, rounds)
        # Captured: the ring drained before each round (records read and dropped).
        with libbpf.RingReader([ring], lambda _i, _data: None) as reader, bench.one_cpu():
            for row, (label, frame) in zip(rows, frames.items()):
                mine, base = [], []
                for _ in range(rounds):
                    reader.consume()
                    mine.append(bench.per_packet_ns(captured, frame, CAPTURED_PER_ROUND))
                    base.append(bench.per_packet_ns(plain.prog_fd, frame, CAPTURED_PER_ROUND))
                reader.consume()
                row["captured_ns"] = round(statistics.median(mine), 3)
                row["captured_ratio"] = round(statistics.median(m / b for m, b in zip(mine, base)), 3)
    return {"frames": rows, "repeat": repeat, "rounds": rounds, "captured_per_round": CAPTURED_PER_ROUND}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=None, metavar="REF")
    parser.add_argument("--repeat", type=int, default=bench.DEFAULT_REPEAT)
    parser.add_argument("--rounds", type=int, default=bench.DEFAULT_ROUNDS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ref = args.before or subprocess.run(["git", "-C", str(actions.REPO), "merge-base", "HEAD", "main"], check=True,
                                        capture_output=True, text=True).stdout.strip()
    start = time.monotonic()
    report = {"before_after": actions.before_after(ref, args.repeat, args.rounds),
              "traced": traced_costs(args.repeat, args.rounds)}
    report["seconds"] = round(time.monotonic() - start, 1)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    actions.print_before_after(report["before_after"])
    print("\ntraced/plain (count only, no rules), per frame; median of per-round ratios")
    names = ("unselected", "unsampled", "captured", "ring_full")
    print(f"{'frame':<16}{'plain ns':>10}" + "".join(f"{n:>13}" for n in names))
    for r in report["traced"]["frames"]:
        print(f"{r['frame']:<16}{r['plain_ns']:>10.1f}" + "".join(f"{r[n + '_ratio']:>12.2f}x" for n in names))


if __name__ == "__main__":
    main()
