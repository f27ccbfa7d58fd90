#!/usr/bin/env python3
"""Whole-process latency of xdpctl commands, with baselines from the same run.

    sudo .venv/bin/python benchmarks/cli_latency.py [--runs N] [--json]

Measures, on a throw-away lab interface (no traffic is sent):
- `xdpctl stats --json` (target: under 0.5 s), against the bare interpreter
  start (`python -c pass`) and `xdpctl --version`;
- `xdpctl attach` (BCC compile included) and `xdpctl detach`.

Times are this machine's; the baselines, taken in the same run, say how much
of a command's time is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time

from xdpctl import lab as labs
from xdpctl.state import STATE_ROOT

PY = sys.executable


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return elapsed


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"median_s": round(statistics.median(ordered), 4),
            "p90_s": round(ordered[int(0.9 * (len(ordered) - 1))], 4),
            "min_s": round(ordered[0], 4), "runs": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    xdpctl = [PY, "-m", "xdpctl"]
    root_existed = os.path.exists(STATE_ROOT)
    lab = labs.up("cl" + secrets.token_hex(3))
    results: dict[str, dict] = {}
    try:
        results["python -c pass"] = summary([timed([PY, "-c", "pass"]) for _ in range(args.runs)])
        results["xdpctl --version"] = summary([timed([*xdpctl, "--version"]) for _ in range(args.runs)])
        attach, detach = [], []
        for _ in range(3):
            attach.append(timed([*xdpctl, "attach", lab.host_if]))
            detach.append(timed([*xdpctl, "detach", lab.host_if]))
        timed([*xdpctl, "attach", lab.host_if, "--drop-non-ip"])
        results["xdpctl stats --json"] = summary([timed([*xdpctl, "stats", "--json"]) for _ in range(args.runs)])
        results["xdpctl attach (compile included)"] = summary(attach)
        results["xdpctl detach"] = summary(detach)
        timed([*xdpctl, "detach", lab.host_if])
    finally:
        labs.down(lab)
        if not root_existed and os.path.isdir(STATE_ROOT) and not os.listdir(STATE_ROOT):
            os.rmdir(STATE_ROOT)  # xdpctl keeps it as its lock's anchor; this run made it
    if args.json:
        print(json.dumps(results, indent=2))
        return
    width = max(map(len, results))
    print(f"{'command'.ljust(width)}  median    p90     min   (runs)")
    for name, r in results.items():
        print(f"{name.ljust(width)}  {r['median_s']:.3f}s  {r['p90_s']:.3f}s  {r['min_s']:.3f}s  ({r['runs']})")


if __name__ == "__main__":
    main()
