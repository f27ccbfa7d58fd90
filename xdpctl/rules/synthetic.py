"""Synthetic rule sets for benchmarks: deterministic, and mixed the way a
real filter is (IPv4 and IPv6 prefixes, protocols, port ranges, MACs, ICMP
types), with addresses chosen so that the benchmark frames match only the
last rule: the search must look past all the others."""

from __future__ import annotations

import ipaddress
import random

from ..datapath import contract
from .model import ACTIONS, Rule, parse_match


def _v4(rng: random.Random) -> str:
    # 11.0.0.0/8 .. 100.0.0.0/8: away from the benchmark frames (198.18/15).
    plen = rng.choice([16, 20, 24, 24, 28, 32])
    addr = (rng.randrange(11, 100) << 24) | rng.getrandbits(24)
    return str(ipaddress.ip_network((addr >> (32 - plen) << (32 - plen), plen)))


def _v6(rng: random.Random) -> str:
    plen = rng.choice([32, 48, 56, 64, 128])
    addr = (0x2001_0db8 << 96) | rng.getrandbits(96)
    return str(ipaddress.ip_network((addr >> (128 - plen) << (128 - plen), plen)))


def _mac(rng: random.Random) -> str:
    return ":".join(f"{b:02x}" for b in [0x02, 0x42, *rng.randbytes(4)])


def mixed_values(rng: random.Random) -> dict:
    kind = rng.random()
    if kind < 0.30:
        v = {"src": _v4(rng), "proto": rng.choice(["tcp", "udp"])}
        if rng.random() < 0.6:
            v["dport"] = rng.choice(["22", "53", "80", "443", "1024-2047", "6000-6100", "8080"])
        return v
    if kind < 0.45:
        return {"src": _v6(rng), "proto": rng.choice(["tcp", "udp", "icmpv6"])}
    if kind < 0.70:
        lo = rng.randrange(10000, 60000)
        return {"proto": rng.choice(["tcp", "udp"]), "dport": f"{lo}-{lo + rng.randrange(0, 50)}"}
    if kind < 0.85:
        return {"proto": "icmp", "icmp_type": rng.choice([3, 5, 11, 13, 17])}
    return {"src_mac": _mac(rng)}


def mixed(n: int, seed: int = 1) -> list[Rule]:
    """n rules; the last one matches the benchmark's UDP frames to port 9."""
    rng = random.Random(seed)
    rules, seen = [], set()
    while len(rules) < n - 1:
        values = mixed_values(rng)
        match = parse_match(values)
        if match in seen:
            continue
        seen.add(match)
        i = len(rules) + 1
        rules.append(Rule(ACTIONS["drop"], match, contract.PRIORITY_DEFAULT, False, i, i, i - 1))
    last = parse_match({"proto": "udp", "dport": "9"})
    rules.append(Rule(ACTIONS["pass"], last, contract.PRIORITY_DEFAULT, False, n, n, n - 1))
    return rules


def blocklist(n: int, seed: int = 2) -> list[str]:
    """n distinct IPv4 prefixes (/16 to /32), for block-list loads."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(_v4(rng))
    return sorted(out)
