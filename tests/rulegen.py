"""Random rule sets, and frames aimed at them, shared by the unit tests of
the table builder and the kernel tests of the compiled engine."""

from __future__ import annotations

import random

from xdpctl.datapath import contract
from xdpctl.traffic import frames
from xdpctl.rules.model import ACTIONS, Match, Rule, parse_match

V4 = ["198.18.0.0/15", "198.18.1.0/24", "198.18.1.7/32", "203.0.113.0/24", "10.0.0.0/8", "0.0.0.0/0",
      "198.18.1.128/25", "10.1.0.0/16"]
V6 = ["fd78:6470::/32", "fd78:6470:1::/48", "fd78:6470:1::2/128", "2001:db8::/32", "::/0"]
MACS = ["02:78:64:01:00:02", "02:78:64:01:00:01", "02:00:00:00:00:09"]


def random_match(rng: random.Random) -> Match:
    for _ in range(100):
        values: dict = {}
        family = rng.choice([4, 6, None])
        if family and rng.random() < 0.5:
            values["src"] = rng.choice(V4 if family == 4 else V6)
        if family and rng.random() < 0.3:
            values["dst"] = rng.choice(V4 if family == 4 else V6)
        r = rng.random()
        if r < 0.3:
            values["proto"] = rng.choice(["tcp", "udp"])
            if rng.random() < 0.6:
                values[rng.choice(["sport", "dport"])] = rng.choice(["9", "80", "40000", "1-1024", "22-25", "443"])
            if values["proto"] == "tcp" and rng.random() < 0.3:
                values["tcp_flags"] = rng.choice(["syn", "syn,!ack", "!syn", "ack"])
        elif r < 0.45:
            values["proto"] = {4: "icmp", 6: "icmpv6"}.get(family, "icmp")
            if family == 6:
                values.setdefault("src", rng.choice(V6))
            if rng.random() < 0.7:
                values["icmp_type"] = rng.choice([8, 128, 0])
                if rng.random() < 0.3:
                    values["icmp_code"] = 0
        elif r < 0.55:
            values["proto"] = rng.choice(["47", "132", "59"])
        if rng.random() < 0.15:
            values["src_mac"] = rng.choice(MACS)
        if rng.random() < 0.1:
            values["dst_mac"] = rng.choice(MACS)
        if rng.random() < 0.15:
            values["vlan"] = rng.choice([100, 200])
        if rng.random() < 0.1 and not family and "proto" not in values:
            values["ethertype"] = rng.choice(["0x0806", "0x88cc", "0x0800", "0x86dd"])
        try:
            return parse_match(values)
        except Exception:
            continue
    return Match()


def random_rules(rng: random.Random, n: int) -> list[Rule]:
    rules = []
    for i in range(n):
        explicit = rng.random() < 0.3
        rules.append(Rule(
            action=rng.choice(list(ACTIONS.values())),
            match=random_match(rng),
            priority=rng.choice([5, 10, 2000]) if explicit else contract.PRIORITY_DEFAULT,
            priority_set=explicit,
            id=i + 1, seq=i + 1, slot=i,
        ))
    return rules


def frame_pool() -> list[bytes]:
    ep = frames.Endpoints("02:78:64:01:00:02", "02:78:64:01:00:01", "198.18.1.2", "198.18.1.1",
                          "fd78:6470:1::2", "fd78:6470:1::1")
    out = list(frames.build("mix", ep))
    out += frames.build("mix", ep, vlans=(200, 100))
    out += frames.build("syn-flood", ep, src_cidr="198.18.0.0/15")[:40]
    out += frames.build("udp-flood", ep, src_cidr="10.0.0.0/8")[:20]
    out += frames.build("icmp-flood", ep, src_cidr="203.0.113.0/24")[:10]
    return out


FRAMES = frame_pool()


