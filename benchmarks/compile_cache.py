#!/usr/bin/env python3
"""The compile cache: whole-process attach and replace, cold against warm.

    sudo .venv/bin/python benchmarks/compile_cache.py [--runs N] [--json]

On a throw-away lab interface (no traffic is sent), each step a fresh
`xdpctl` process, as a user runs it, in rounds; each round times:
- cold: with an empty compile cache (XDPCTL_CACHE_DIR, a new empty
  directory each round), `xdpctl attach IFACE --drop-non-ip` (a fresh attach:
  BCC compiles), then `xdpctl attach IFACE` (a replace by the count-only
  variant: another compile), then detach;
- warm: the same with a cache that holds both variants (loaded without BCC;
  the kernel still verifies them).
Cold and warm alternate, so both see the same machine. The run re-executes
itself in a mount namespace of its own with a bpffs of its own: xdpctl's
state lock is machine-wide, and other xdpctl processes holding it (other
test runs on a shared machine) would otherwise be timed too. The figures are the
ratios cold/warm of the medians (and the median of per-round ratios); the
target is a warm attach at least 10x faster than a cold one.

A whole attach also pays for the interpreter, its imports (pyroute2 alone
takes 0.15-0.25 s) and netlink, which no cache removes; the baselines
(`python -c pass`, `xdpctl --version`, `xdpctl status --json`, which imports
and uses netlink as attach does) show that floor. So the step the cache
replaces is timed on its own too, in this process: compile_and_load() of the
`--drop-non-ip` program against pins in a scratch directory on bpffs, cold
(an empty cache) and warm.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from common import PY, XDPCTL, print_table, run, summary, throwaway_lab

CACHE_ENV = "XDPCTL_CACHE_DIR"
PRIVATE_ENV = "XDPCTL_BENCH_PRIVATE_BPFFS"


def in_private_bpffs() -> None:
    """Re-run this script in a private mount namespace with a fresh bpffs at
    /sys/fs/bpf (so a private state root and lock); everything pinned there
    goes with the namespace."""
    if os.environ.get(PRIVATE_ENV) == "1":
        return
    script = 'mount -t bpf -o mode=0700 bpf /sys/fs/bpf && exec "$@"'
    os.execvpe("unshare", ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           sys.executable, *sys.argv], {**os.environ, PRIVATE_ENV: "1"})


def round_trip(ifname: str, cache: str) -> tuple[float, float]:
    """(attach, replace) seconds with the cache at cache; detaches after."""
    env = {**os.environ, CACHE_ENV: cache}
    attach, _ = run([*XDPCTL, "attach", ifname, "--drop-non-ip"], env=env)
    replace, out = run([*XDPCTL, "attach", ifname], env=env)
    if "replaced xdpctl's program" not in out:
        raise SystemExit(f"the second attach did not replace the program: {out.strip()}")
    run([*XDPCTL, "detach", ifname], env=env)
    return attach, replace


def program_step(runs: int, work: str) -> dict[str, list[float]]:
    """compile_and_load() alone, cold and warm, alternately (seconds)."""
    from xdpctl.datapath.program import FilterOptions, filter_program
    from xdpctl.kernel.compiler import compile_and_load
    from xdpctl.lifecycle.state import scratch_dir

    def once(cache: str) -> float:
        os.environ[CACHE_ENV] = cache
        with scratch_dir("bench-cache") as pins:
            start = time.perf_counter()
            loaded = compile_and_load(filter_program(FilterOptions(drop_non_ip=True), pins))
            took = time.perf_counter() - start
            loaded.close()
        return took

    saved = os.environ.get(CACHE_ENV)
    out: dict[str, list[float]] = {"cold": [], "warm": []}
    try:
        warm = os.path.join(work, "step-warm")
        once(warm)
        for i in range(runs):
            out["cold"].append(once(os.path.join(work, f"step-cold{i}")))
            out["warm"].append(once(warm))
    finally:
        if saved is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = saved
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="rounds of cold and warm (default 5)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    in_private_bpffs()

    times: dict[str, list[float]] = {"cold attach": [], "warm attach": [], "cold replace": [], "warm replace": []}
    work = tempfile.mkdtemp(prefix="xdpctl-bench-cache-")  # 0700
    try:
        with throwaway_lab("cc") as lab:
            baselines = {
                "python -c pass": summary([run([PY, "-c", "pass"])[0] for _ in range(args.runs)]),
                "xdpctl --version": summary([run([*XDPCTL, "--version"])[0] for _ in range(args.runs)]),
                "xdpctl status --json": summary([run([*XDPCTL, "status", "--json"])[0] for _ in range(args.runs)]),
            }
            warm = os.path.join(work, "warm")
            round_trip(lab.host_if, warm)  # fills it: both variants
            for i in range(args.runs):
                cold = os.path.join(work, f"cold{i}")  # empty: xdpctl makes it
                a, r = round_trip(lab.host_if, cold)
                times["cold attach"].append(a)
                times["cold replace"].append(r)
                shutil.rmtree(cold)
                a, r = round_trip(lab.host_if, warm)
                times["warm attach"].append(a)
                times["warm replace"].append(r)
        step = program_step(args.runs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    times["cold compile_and_load()"] = step["cold"]
    times["warm compile_and_load()"] = step["warm"]
    results = {**baselines, **{name: summary(samples) for name, samples in times.items()}}
    ratios = {}
    for what in ("attach", "replace", "compile_and_load()"):
        cold, warm = times[f"cold {what}"], times[f"warm {what}"]
        ratios[what] = {
            "cold_over_warm": round(statistics.median(cold) / statistics.median(warm), 2),
            "per_round_median": round(statistics.median(c / w for c, w in zip(cold, warm)), 2),
            "best_over_best": round(min(cold) / min(warm), 2),
        }
    if args.json:
        print(json.dumps({"results": results, "ratios": ratios, "target": "warm attach >= 10x faster"}, indent=2))
        return
    print_table(results, "command")
    for what, r in ratios.items():
        print(f"{what}: cold/warm {r['cold_over_warm']}x (median of per-round ratios {r['per_round_median']}x, "
              f"best against best {r['best_over_best']}x)")


if __name__ == "__main__":
    main()
