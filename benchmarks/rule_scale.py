#!/usr/bin/env python3
"""Rule sets at scale: whole-process times of apply, rule list and rule add.

    sudo .venv/bin/python benchmarks/rule_scale.py [--blocklist N] [--mixed N] [--runs N] [--json]

On a throw-away lab interface (no traffic is sent), each step a fresh
`xdpctl` process, as a user runs it:
- `xdpctl apply` of a block list of N plain IPv4 prefixes (default 100,000;
  target: under 10 s, the compile included);
- `xdpctl apply` of N synthetic mixed rules (default 10,000: IPv4/IPv6
  prefixes with protocols and ports, port ranges, ICMP types, MACs);
- with those in place: `xdpctl rule list IFACE --json` (target: under 2 s),
  and `rule add` / `rule del` of a rule whose kinds are in use (maps only,
  target: under 0.5 s).

Baselines from the same run: `python -c pass` and `xdpctl --version`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from common import PY, XDPCTL, print_table, run, summary, throwaway_lab
from xdpctl import safe_files
from xdpctl.rules import config_file, synthetic
from xdpctl.rules.model import ACTIONS, Rule, parse_match


def write_file(directory: str, name: str, ifname: str, rules: list[Rule]) -> str:
    path = os.path.join(directory, name)
    safe_files.write(path, config_file.dump([(ifname, "native", "allow", False, rules)]))
    return path


def blocklist_rules(n: int) -> list[Rule]:
    return [Rule(ACTIONS["drop"], parse_match({"src": net}), 1000, False, i, i, i - 1)
            for i, net in enumerate(synthetic.blocklist(n), start=1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocklist", type=int, default=100_000)
    parser.add_argument("--mixed", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results: dict[str, dict] = {}
    with throwaway_lab("rs") as lab, tempfile.TemporaryDirectory() as tmp:
        ifname = lab.host_if
        block = write_file(tmp, "blocklist.toml", ifname, blocklist_rules(args.blocklist))
        mixed = write_file(tmp, "mixed.toml", ifname, synthetic.mixed(args.mixed))
        results["python -c pass"] = summary([run([PY, "-c", "pass"])[0] for _ in range(args.runs)])
        results["xdpctl --version"] = summary([run([*XDPCTL, "--version"])[0] for _ in range(args.runs)])
        elapsed, _ = run([*XDPCTL, "apply", block])
        results[f"apply: attach with {args.blocklist:,} plain prefixes"] = summary([elapsed])
        listed = json.loads(run([*XDPCTL, "rule", "list", ifname, "--json"])[1])
        assert len(listed["rules"]) == args.blocklist, "the block list did not load whole"
        elapsed, _ = run([*XDPCTL, "apply", block])
        results["apply: the same file again (no change)"] = summary([elapsed])
        elapsed, _ = run([*XDPCTL, "apply", mixed])
        results[f"apply: replace with {args.mixed:,} mixed rules"] = summary([elapsed])
        listing = []
        for _ in range(args.runs):
            elapsed, out = run([*XDPCTL, "rule", "list", ifname, "--json"])
            listing.append(elapsed)
        assert len(json.loads(out)["rules"]) == args.mixed, "the mixed set did not load whole"
        results[f"rule list --json ({args.mixed:,} rules)"] = summary(listing)
        adds, dels = [], []
        for i in range(args.runs):
            elapsed, out = run([*XDPCTL, "rule", "add", ifname, "drop", "--proto", "udp",
                                "--dport", str(7000 + i), "--json"])
            adds.append(elapsed)
            rule_id = json.loads(out)["rule"]["id"]
            dels.append(run([*XDPCTL, "rule", "del", ifname, str(rule_id)])[0])
        results[f"rule add, kinds in use ({args.mixed:,} rules)"] = summary(adds)
        results[f"rule del ({args.mixed:,} rules)"] = summary(dels)
        run([*XDPCTL, "detach", ifname])
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print_table(results, "step")


if __name__ == "__main__":
    main()
