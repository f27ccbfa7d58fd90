#!/usr/bin/env python3
"""A spoofed flood against a per-source rate limit, on a lab (issue 13).

    sudo .venv/bin/python benchmarks/flood.py [--src 10.0.0.0/12] [--over 1000/s] [--json]

On a throw-away lab, a rule `drop --over RATE --proto udp` (per source, the
default ceiling), then `xdpctl gen --profile udp-flood --src CIDR`: one frame
from each host address of CIDR (10.0.0.0/12: 1,048,574 sources), each a key
the rule's table has never seen. Reported, from `rule list --json`, the
counters and the rule's table of buckets itself:

- memory: the rule's table's entries and locked memory before and after (an
  LRU hash is allocated whole when it is made: it cannot grow);
- keys in the table, keys evicted, frames the ceiling stopped;
- frames passed (within the rate) against what the ceiling allows in the
  time the flood took (its burst, one second of it, plus its rate times the
  seconds): the ratio must stay at or below 1.

The baseline, in the same run on a fresh lab: the same flood against the
same rule with `--ceiling none`, where every new source gets a full bucket
and its frame passes.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

from common import XDPCTL, run, throwaway_lab
from xdpctl.datapath import contract
from xdpctl.lifecycle.state import STATE_ROOT
from xdpctl.rules import limit_tables
from xdpctl.rules.limits import parse_rate


def buckets_map(lab) -> dict:
    """The rule's table of buckets on the lab's host end: its size and locked memory."""
    ino = os.stat(f"/run/netns/{lab.host_netns}" if lab.host_netns else "/proc/self/ns/net").st_ino
    (path,) = glob.glob(f"{STATE_ROOT}/ns{ino}/*/{contract.PIN_BUCKETS}_*")
    (table,) = limit_tables.memory(path).values()
    return table


def flood(prefix: str, src: str, over: str, ceiling: list[str]) -> dict:
    with throwaway_lab(prefix) as lab:
        iface = lab.host_if
        ns = ["--netns", lab.host_netns] if lab.host_netns else []
        run([*XDPCTL, *ns, "attach", iface])
        run([*XDPCTL, *ns, "rule", "add", iface, "drop", "--over", over, *ceiling,
             "--proto", "udp"])
        before = buckets_map(lab)
        _, out = run([*XDPCTL, "gen", "--lab", lab.name, "--profile", "udp-flood", "--src", src, "--json",
                      "--count", str(_hosts(src))])
        sent = json.loads(out)
        after = buckets_map(lab)
        (rule,) = json.loads(run([*XDPCTL, *ns, "rule", "list", iface, "--json"])[1])["rules"]
        (stats,) = json.loads(run([*XDPCTL, *ns, "stats", iface, "--json"])[1])["interfaces"]
    udp = stats["counters"]["ipv4/udp"]
    seen = rule["limit"]
    return {"sources": sent["distinct_frames"], "frames": sent["frames"], "seconds": sent["seconds"],
            "fps": sent["fps"], "ceiling": rule["ceiling"], "passed": seen["within"]["packets"],
            "dropped": rule["hits"]["packets"], "keys": seen["keys"], "evictions": seen["evictions"],
            "ceiling_over": seen["ceiling_over"], "counted": {"pass": udp["pass"]["packets"],
                                                              "drop": udp["drop"]["packets"]},
            "buckets_before": before, "buckets_after": after}


def _hosts(cidr: str) -> int:
    import ipaddress

    net = ipaddress.ip_network(cidr)
    return net.num_addresses - 2 if net.version == 4 and net.num_addresses > 2 else net.num_addresses


def allowed(ceiling: str, seconds: float) -> float:
    """Frames a ceiling of this rate (in frames) lets through in seconds, its
    burst (one second of it) included."""
    rate = parse_rate(ceiling, "--ceiling")
    per_s = rate.amount / rate.period
    return per_s + per_s * seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default="10.0.0.0/12", help="the flood's sources (every host address)")
    parser.add_argument("--over", default="1000/s", help="the rule's rate per source")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    held = flood("fl", args.src, args.over, [])
    held["allowed"] = round(allowed(held["ceiling"], held["seconds"]))
    held["passed_over_allowed"] = round(held["passed"] / held["allowed"], 3)
    baseline = flood("fn", args.src, args.over, ["--ceiling", "none"])
    report = {"rule": f"drop --over {args.over} --proto udp (per src)", "ceiling": held,
              "no_ceiling": baseline,
              "passed_ratio": round(held["passed"] / max(1, baseline["passed"]), 4)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, r in (("default ceiling", held), ("--ceiling none (baseline)", baseline)):
        print(f"{name}: {r['frames']:,} frames from {r['sources']:,} sources in {r['seconds']:.2f} s "
              f"({r['fps']:,.0f}/s)")
        print(f"  passed {r['passed']:,}, dropped {r['dropped']:,} (the UDP counters: {r['counted']['pass']:,} "
              f"passed, {r['counted']['drop']:,} dropped)")
        print(f"  table: {r['keys']:,} keys of {r['buckets_after']['max_entries']:,}, {r['evictions']:,} evicted, "
              f"{r['ceiling_over']:,} stopped by the ceiling; its table {r['buckets_before']['memlock_bytes']:,} "
              f"bytes before, {r['buckets_after']['memlock_bytes']:,} after")
    print(f"the ceiling ({held['ceiling']}) allows {held['allowed']:,} frames in {held['seconds']:.2f} s; "
          f"passed {held['passed']:,}: {held['passed_over_allowed']:.3f}x of it")
    print(f"passed with the ceiling / without: {report['passed_ratio']:.4f}x")


if __name__ == "__main__":
    main()
