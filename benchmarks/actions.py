#!/usr/bin/env python3
"""The cost of the actions: a plain filter before and after they landed, in
one run, and a redirect rule against a drop rule with the same matches.

    sudo .venv/bin/python benchmarks/actions.py [--before REF] [--repeat N] [--rounds N] [--json]

1. Before/after: the XDP program as REF (default: where this branch last
   met main, `git merge-base HEAD main`) has it in bpf/ (taken
   with `git show`, compiled from a directory of its own) and as this tree
   has it, built with the same -D flags (count only; --drop-non-ip and a deny
   policy; 10 and 1,000 synthetic rules), timed side by side through
   BPF_PROG_TEST_RUN (xdpctl/checks/bench.py's method): after/before is the
   median of per-round ratios, so 1.00x means the actions cost a program
   that does not use them nothing. Also printed: whether the two compile to
   the same instructions (map fds aside).
2. Actions: `xdpctl bench --actions` (one rule deciding every frame, for
   each action, against the drop rule).

REF must be a commit whose bpf/ builds with this tree's layout (it does from
the rule engine on; a REF with other structs is refused by the verifier or
mismeasured).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from xdpctl.checks import bench
from xdpctl.datapath.layout import Layout
from xdpctl.datapath.program import FilterOptions, bpf_dir, empty_program, filter_program
from xdpctl.kernel.build import BuildRequest
from xdpctl.kernel.compiler import compile_and_load
from xdpctl.lifecycle.state import scratch_dir
from xdpctl.rules import engine, synthetic
from xdpctl.rules.tables import build

REPO = Path(__file__).resolve().parent.parent

VARIANTS = {
    "count-only": (FilterOptions(), 0),
    "drop-non-ip+deny": (FilterOptions(drop_non_ip=True, policy_deny=True), 0),
    "rules-10": (FilterOptions(), 10),
    "rules-1000": (FilterOptions(drop_non_ip=True), 1000),
}


def checkout_bpf(ref: str, into: Path) -> Path:
    """bpf/ as ref has it, written into a directory of its own."""
    names = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", f"{ref}:bpf"], check=True,
                           capture_output=True, text=True).stdout.split()
    for name in names:
        data = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:bpf/{name}"], check=True,
                              capture_output=True).stdout
        (into / name).write_bytes(data)
    return into


def load(source_dir: Path, options: FilterOptions, rules: int, stack: contextlib.ExitStack):
    """The program from source_dir, with rules synthetic rules in tables of its own."""
    if not rules:
        request = filter_program(options, None)
        return compile_and_load(BuildRequest(source_dir / request.source.name, request.function, request.defines))
    directory = stack.enter_context(scratch_dir("bench"))
    rule_set = synthetic.mixed(rules)
    built = build(rule_set)
    layout = Layout().grown(built.needs)
    tables = engine.create_tables(directory, layout)
    request = filter_program(options, directory, layout)
    loaded = compile_and_load(BuildRequest(source_dir / request.source.name, request.function, request.defines,
                                           pin_dir=directory))
    engine.write_tables(tables, 0, built, layout)
    engine.write_config(os.path.join(directory, "config"), 0, len(rule_set), rules + 1, rules + 1)
    return loaded


def before_after(ref: str, repeat: int, rounds: int) -> dict:
    loaded = []
    stand = None
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        before_dir = checkout_bpf(ref, Path(tmp))
        try:
            loaded.append(compile_and_load(empty_program()))
            contenders, pairs, same = [], [], {}
            for name, (options, rules) in VARIANTS.items():
                tag = name.replace("-", "_").replace("+", "_")
                b = load(before_dir, options, rules, stack)
                a = load(bpf_dir(), options, rules, stack)
                loaded += [b, a]
                contenders += [bench.Contender(f"before_{tag}", b.prog_fd), bench.Contender(f"after_{tag}", a.prog_fd)]
                pairs.append((f"after_{tag}", f"before_{tag}"))
                same[name] = _xlated(b.prog_fd) == _xlated(a.prog_fd)
            stand = bench.Stand()
            rows = bench.measure(bench.Contender("empty", loaded[0].prog_fd), contenders, bench.bench_frames(),
                                 repeat, rounds, stand, tuple(pairs))
        finally:
            if stand is not None:
                stand.close()
            for item in loaded:
                item.close()
    return {"before": ref, "variants": list(VARIANTS), "same_instruction_count": same, "frames": rows,
            "repeat": repeat, "rounds": rounds}


def _xlated(fd: int) -> int:
    from xdpctl.kernel import libbpf

    return libbpf.prog_info(fd).xlated_len


def print_before_after(report: dict) -> None:
    frames = [r["frame"] for r in report["frames"]]
    print(f"after/before (before: {report['before']}), per frame; median of per-round ratios")
    print(f"{'variant':<18}" + "".join(f"{f:>15}" for f in frames) + "   same insns")
    for name in report["variants"]:
        tag = name.replace("-", "_").replace("+", "_")
        cells = "".join(f"{r[f'after_{tag}_vs_before_{tag}']:>14.3f}x" for r in report["frames"])
        print(f"{name:<18}{cells}   {'yes' if report['same_instruction_count'][name] else 'no'}")
    print(f"{'(against empty)':<18}" + "".join(
        f"{r[f'after_count_only_ratio']:>14.2f}x" for r in report["frames"]) + "   count-only, after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=None, metavar="REF")
    parser.add_argument("--repeat", type=int, default=bench.DEFAULT_REPEAT)
    parser.add_argument("--rounds", type=int, default=bench.DEFAULT_ROUNDS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    before = args.before or subprocess.run(["git", "-C", str(REPO), "merge-base", "HEAD", "main"], check=True,
                                           capture_output=True, text=True).stdout.strip()
    report = {"before_after": before_after(before, args.repeat, args.rounds),
              "actions": bench.bench_actions(FilterOptions(), args.repeat, args.rounds)}
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return
    print_before_after(report["before_after"])
    print()
    from xdpctl.cli.render import print_bench_actions

    print_bench_actions(report["actions"])


if __name__ == "__main__":
    main()
