"""The rule tables, without a kernel: an emulation of bpf/rules_kern.h's
lookups over the bytes xdpctl/rules/tables.py builds must find, for every frame,
the rule a brute-force first-match search finds. Random rule sets of every
kind of match, against frames aimed at them."""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest

from rulegen import FRAMES, random_rules
from xdpctl.datapath import classify, contract
from xdpctl.datapath.layout import KIND_NAMES, TRIES, Layout
from xdpctl.rules.model import ACTIONS, Rule, decide, parse_match
from xdpctl.rules.tables import Trie, build

NO = contract.NO_RULE


def emulate(layout: Layout, raw: bytes, p: classify.Parsed) -> int:
    """bpf/rules_kern.h's xdpctl_match, in Python, over the tables bytes."""
    sec = {s.name: s for s in layout.sections()}

    def u32(name: str, i: int) -> int:
        return struct.unpack_from("<I", raw, sec[name].offset + 4 * i)[0]

    def u64(offset: int) -> int:
        return struct.unpack_from("<Q", raw, offset)[0]

    def trie(name: str, key: int, nbytes: int) -> int:
        member = TRIES[name][0]
        e = u32(f"{member}_root", key >> (8 * nbytes - 16))
        for i in range(2, 2 + layout.depth(name)):
            if not e & contract.TRIE_CHILD:
                break
            byte = (key >> (8 * (nbytes - 1 - i))) & 0xFF
            e = u32(f"{member}_node", (((e & ~contract.TRIE_CHILD) << 8) | byte) & (layout.node_count(name) * 256 - 1))
        return 0 if e & contract.TRIE_CHILD else e

    cw = layout.record_words
    summary = contract.summary_words(layout.words)
    recs = []
    best, best_order = NO, (1 << 64) - 1

    def order_of(d: int) -> int:
        return u64(sec["decision"].offset + 16 * (d & (layout.decisions - 1)))

    for kind in KIND_NAMES:
        if not layout.has_kind(kind):
            continue
        c = 0
        if kind in ("SRC", "DST"):
            addr = p.src if kind == "SRC" else p.dst
            name = f"{kind}{p.ipv}"
            if p.ipv and layout.has_trie(name):
                c = trie(name, addr, 4 if p.ipv == 4 else 16)
        elif kind in ("SRC_MAC", "DST_MAC"):
            mac = p.src_mac if kind == "SRC_MAC" else p.dst_mac
            if mac is not None:
                c = trie("SMAC" if kind == "SRC_MAC" else "DMAC", mac, 6)
        else:
            value = {
                "PROTO": p.l4proto, "SPORT": p.sport, "DPORT": p.dport, "VLAN": p.vlan_id,
                "ETHERTYPE": p.ethertype, "TCP_FLAGS": p.tcp_flags,
                "ICMP": None if p.icmp_type is None else (p.icmp_type << 8) | p.icmp_code,
            }[kind]
            if value is not None:
                c = u32(kind.lower(), value)
        rec = sec[f"cls_{kind.lower()}"].offset + 8 * cw * (c & (layout.cap(kind) - 1))
        recs.append(rec)
        if kind in ("SRC", "DST"):
            plain = u64(rec) & 0xFFFFFFFF
            if plain != NO and order_of(plain) < best_order:
                best, best_order = plain, order_of(plain)
    if layout.words:
        pos = None
        for s in range(summary):
            m = 0 if recs else (1 << 64) - 1
            for r in recs:
                m |= u64(r + 8 + 8 * s)
            while m and pos is None:
                w = s * 64 + ((m & -m).bit_length() - 1)
                x = (1 << 64) - 1
                for r in recs:
                    x &= u64(r + 8 + 8 * summary + 8 * (w & (layout.words - 1)))
                if x:
                    pos = w * 64 + ((x & -x).bit_length() - 1)
                m &= m - 1
            if pos is not None:
                break
        if pos is not None and order_of(pos) < best_order:
            best = pos
    return best


def check(rules: list[Rule]) -> None:
    built = build(rules)
    layout = Layout().grown(built.needs)
    raw = built.tables(layout)
    assert len(raw) == layout.tables_size
    decisions = built.general + built.plain
    for frame in FRAMES:
        p = classify.parse(frame)
        want = decide(rules, p)
        got = emulate(layout, raw, p)
        got_rule = None if got == NO else decisions[got]
        assert got_rule == want, (frame.hex(), got_rule, want)


@pytest.mark.parametrize("seed", range(60))
def test_random_rule_sets_decide_like_first_match(seed):
    rng = random.Random(seed)
    check(random_rules(rng, rng.choice([1, 3, 10, 40, 150])))


def test_more_than_64_general_rules_use_the_summary():
    rng = random.Random(7)
    rules = random_rules(rng, 300)
    built = build(rules)
    assert len(built.general) > 128
    check(rules)


def test_plain_prefix_rules_pick_the_best_covering_one():
    mk = lambda i, src, action, prio=None: Rule(  # noqa: E731
        ACTIONS[action], parse_match({"src": src}), prio or contract.PRIORITY_DEFAULT, prio is not None, i, i, i)
    rules = [
        mk(1, "198.18.0.0/15", "drop"),
        mk(2, "198.18.1.0/24", "pass"),          # longer, but later: the /15 decides
        mk(3, "198.18.1.2/32", "pass", prio=10),  # explicit priority first
        mk(4, "10.0.0.0/8", "drop"),
    ]
    built = build(rules)
    assert len(built.plain) == 4 and not built.general
    check(rules)


def test_priorities_and_insertion_order():
    rules = [
        Rule(ACTIONS["drop"], parse_match({"proto": "udp"}), id=1, seq=1, slot=0),
        Rule(ACTIONS["pass"], parse_match({"dport": "9"}), id=2, seq=2, slot=1),
        Rule(ACTIONS["pass"], parse_match({"src_mac": "02:78:64:01:00:02"}), 10, True, id=3, seq=3, slot=2),
    ]
    p = classify.parse(FRAMES[1])  # IPv4/UDP to port 9 from the MAC above
    assert decide(rules, p).id == 3
    assert decide(rules[:2], p).id == 1
    check(rules)


def test_trie_keeps_longest_prefix_semantics():
    t = Trie(32)
    for net, cid in (("10.0.0.0/8", 1), ("10.1.0.0/16", 2), ("10.1.2.0/24", 3), ("10.1.2.3/32", 4),
                     ("10.1.2.128/25", 5)):
        n = ipaddress.ip_network(net)
        t.insert(int(n.network_address), n.prefixlen, cid)
    look = lambda a: t.lookup(int(ipaddress.ip_address(a)))  # noqa: E731
    assert [look(a) for a in ("11.0.0.1", "10.9.9.9", "10.1.9.9", "10.1.2.9", "10.1.2.3", "10.1.2.200")] == \
        [0, 1, 2, 3, 4, 5]


def test_needs_and_layout_growth():
    rng = random.Random(3)
    rules = random_rules(rng, 100)
    built = build(rules)
    layout = Layout().grown(built.needs)
    assert layout.fits(built.needs) and layout.tag == 1
    assert layout.words * 64 >= len(built.general)
    more = build(rules + random_rules(random.Random(4), 200))
    assert not layout.fits(more.needs) or layout.words * 64 >= len(more.general)
    bigger = layout.grown(more.needs)
    assert bigger.tag == 2 and bigger.fits(more.needs) and bigger.fits(built.needs)
