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

from common import PY, XDPCTL, print_table, run, summary, throwaway_lab


def timed(cmd: list[str]) -> float:
    return run(cmd)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    xdpctl = XDPCTL
    results: dict[str, dict] = {}
    with throwaway_lab("cl") as lab:
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
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print_table(results, "command")


if __name__ == "__main__":
    main()
