"""Rate limits (--over) through BPF_PROG_TEST_RUN (no veth): the compiled
buckets give exact counts, burst then rate, per source, prefix, flow and
rule, in frames and in bytes; a frame within the rate goes on to the next
rule; and the Python bucket (xdpctl/rules/limits.py) is the oracle.

Times: frames of one burst are sent microseconds apart, far less than one
token of the rates used (at most a few per second), so a burst passes
exactly `burst` frames. For "then the rate" the test sleeps, measures the
time it slept on both sides of the kernel's clock reads, and expects the
whole tokens the Python bucket gives for it (the sleep is chosen half a
token from a boundary, so both bounds give the same count).
"""

from __future__ import annotations

import contextlib
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from xdpctl.datapath import contract
from xdpctl.datapath.layout import Layout
from xdpctl.datapath.program import FilterOptions, filter_program
from xdpctl.kernel import libbpf
from xdpctl.kernel.compiler import compile_and_load
from xdpctl.lifecycle.state import scratch_dir
from xdpctl.rules import engine, limit_tables
from xdpctl.rules.limits import TABLE_DEFAULT, TABLE_MIN
from xdpctl.rules.model import Rule, parse_limit, parse_match
from xdpctl.rules.tables import build

pytestmark = pytest.mark.kernel

XDP_DROP, XDP_PASS = 1, 2


def rule(action: str, slot: int, priority: int = 1000, limit: dict | None = None, **match) -> Rule:
    m = parse_match(match)
    return Rule(contract.ACTION_PASS if action == "pass" else contract.ACTION_DROP, m, priority,
                priority != 1000, slot + 1, slot + 1, slot, limit=parse_limit(limit, m) if limit else None)


def udp4(src: str = "192.0.2.1", dst: str = "198.51.100.7", sport: int = 4000, dport: int = 53,
         size: int = 0) -> bytes:
    frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst) / UDP(
        sport=sport, dport=dport)
    raw = bytes(frame)
    if size > len(raw):
        raw = bytes(frame / (b"x" * (size - len(raw))))
    return raw


def udp6(src: str, dport: int = 53) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IPv6(src=src, dst="2001:db8::7")
                 / UDP(sport=4000, dport=dport))


@contextlib.contextmanager
def program(rules: list[Rule], options: FilterOptions = FilterOptions()):
    built = build(rules)
    layout = Layout().grown(built.needs)
    assert layout.actions & contract.FEAT_LIMITS
    with scratch_dir("test") as d:
        tables = engine.create_tables(d, layout)
        loaded = compile_and_load(filter_program(options, d, layout))
        try:
            engine.write_tables(tables, 1, built, layout)
            engine.write_config(f"{d}/{contract.PIN_CONFIG}", 1, len(rules), 1, 1)
            limit_tables.sync(f"{d}/{layout.pin_buckets()}", rules, {r.slot for r in rules})
            engine.write_limits(f"{d}/{layout.pin_limits()}", rules)
            yield Bed(loaded.prog_fd, d, layout)
        finally:
            loaded.close()


class Bed:
    def __init__(self, fd: int, directory: str, layout: Layout):
        self.fd, self.dir, self.layout = fd, directory, layout

    def run(self, frame: bytes, n: int = 1) -> list[int]:
        return [libbpf.prog_test_run(self.fd, frame).retval for _ in range(n)]

    def passed(self, frame: bytes, n: int) -> int:
        return self.run(frame, n).count(XDP_PASS)

    def limit_stats(self, slot: int) -> tuple[int, int, int, int]:
        """(within, within_bytes, new_keys, ceiling_over) of the rule in slot."""
        path = f"{self.dir}/{contract.PIN_LIMIT_STATS}_{self.layout.slots}"
        return engine.read_limit_stats(path, [slot])[slot]

    def keys(self) -> dict[int, int]:
        """slot -> keys in its table, for every table there is."""
        path = f"{self.dir}/{self.layout.pin_buckets()}"
        return limit_tables.count_keys(path, sorted(limit_tables.memory(path)))

    def sizes(self) -> dict[int, int]:
        """slot -> its table's size."""
        return {s: t["max_entries"] for s, t in limit_tables.memory(f"{self.dir}/{self.layout.pin_buckets()}").items()}

    def hits(self) -> dict[int, tuple[int, int]]:
        return engine.read_hits(f"{self.dir}/{self.layout.pin_hits()}", self.layout.slots)

    def after_sleep(self, seconds: float, frame: bytes, n: int) -> tuple[int, float, float]:
        """Sleep, then send n frames: (passed, the least and the most time
        the bucket can have seen since the last frame before)."""
        t0 = time.monotonic()
        time.sleep(seconds)
        t1 = time.monotonic()
        got = self.run(frame, n)
        t2 = time.monotonic()
        return got.count(XDP_PASS), t1 - t0, t2 - t0 + 0.001


def test_per_source_a_burst_passes_burst_frames_then_the_rate():
    """drop --over 2/s --burst 5: 8 frames at once from one source pass 5
    (the policy allows them) and drop 3; another source has its own bucket;
    1.25 s later, 2 more pass (2.5 tokens) and the rest go over."""
    with program([rule("drop", 0, limit={"over": "2/s", "burst": "5"}, proto="udp")]) as bed:
        a, b = udp4(src="192.0.2.1"), udp4(src="192.0.2.2")
        assert bed.run(a, 8) == [XDP_PASS] * 5 + [XDP_DROP] * 3
        assert bed.run(b, 6) == [XDP_PASS] * 5 + [XDP_DROP]
        passed, lo, hi = bed.after_sleep(1.25, a, 5)
        assert int(2 * lo) == int(2 * hi) == 2, (lo, hi)  # the machine slept as asked
        assert passed == 2
        # The rule's hits are the frames that went over: 3 + 1 + 3.
        assert bed.hits() == {0: (7, 7 * len(a))}


@pytest.mark.matrix
def test_within_the_rate_a_frame_goes_on_to_the_next_rule():
    """A limited drop before a pass under policy deny: the frames within the
    rate are passed by the next rule (its hits), those over are dropped."""
    rules = [rule("drop", 0, priority=10, limit={"over": "1/s", "burst": "3"}, proto="udp"),
             rule("pass", 1, priority=20, proto="udp"),
             rule("drop", 2, priority=30, limit={"over": "1/s", "burst": "2"}, proto="tcp")]
    with program(rules, FilterOptions(policy_deny=True)) as bed:
        f = udp4()
        assert bed.run(f, 5) == [XDP_PASS] * 3 + [XDP_DROP] * 2
        assert bed.hits() == {0: (2, 2 * len(f)), 1: (3, 3 * len(f))}
        # A TCP frame within its limit matches no rule: the policy drops it,
        # and no rule counts it.
        t = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="192.0.2.1", dst="198.51.100.7")
                  / TCP(sport=1, dport=2))
        assert bed.run(t, 3) == [XDP_DROP] * 3
        assert bed.hits() == {0: (2, 2 * len(f)), 1: (3, 3 * len(f)), 2: (1, len(t))}


def test_a_byte_rate_charges_each_frame_its_length():
    """8kbit/s (1,000 bytes a second), burst 24,000 bits (3,000 bytes): of
    1,000-byte frames, 3 pass at once; 1.5 s later one more (1.5 tokens:
    1,500 bytes), and a 400-byte frame fits in what is left."""
    with program([rule("drop", 0, limit={"over": "8kbit/s", "burst": "24000"}, proto="udp")]) as bed:
        big, small = udp4(size=1000), udp4(size=400)
        assert bed.run(big, 5) == [XDP_PASS] * 3 + [XDP_DROP] * 2
        assert bed.run(small, 1) == [XDP_DROP]  # nothing left but a few bytes' worth
        passed, lo, hi = bed.after_sleep(1.5, big, 2)
        assert int(1000 * lo) // 1000 == 1 and int(1000 * hi) < 2000 - 400, (lo, hi)
        assert passed == 1
        assert bed.run(small, 1) == [XDP_PASS]  # ~500 bytes left: a 400-byte frame fits


def test_per_prefix_per_flow_and_per_rule_share_buckets_as_they_say():
    rules = [rule("drop", 0, limit={"over": "1/s", "burst": "2", "per": "src/24"}, dport="53"),
             rule("drop", 1, limit={"over": "1/s", "burst": "2", "per": "flow"}, dport="54"),
             rule("drop", 2, limit={"over": "1/s", "burst": "2", "per": "rule"}, dport="55")]
    with program(rules) as bed:
        # src/24: .1 and .2 share a bucket, 192.0.3.1 has its own.
        assert bed.passed(udp4(src="192.0.2.1", dport=53), 1) == 1
        assert bed.passed(udp4(src="192.0.2.2", dport=53), 3) == 1
        assert bed.passed(udp4(src="192.0.3.1", dport=53), 3) == 2
        # IPv6 sources of a rule of both families: by /64.
        assert bed.passed(udp6("2001:db8:0:1::1"), 1) == 1
        assert bed.passed(udp6("2001:db8:0:1::2"), 3) == 1
        assert bed.passed(udp6("2001:db8:0:2::1"), 3) == 2
        # flow: another source port is another flow.
        assert bed.passed(udp4(sport=1, dport=54), 3) == 2
        assert bed.passed(udp4(sport=2, dport=54), 3) == 2
        assert bed.passed(udp4(sport=1, dport=54), 1) == 0
        # rule: every source shares one bucket.
        assert bed.passed(udp4(src="192.0.2.1", dport=55), 1) == 1
        assert bed.passed(udp4(src="203.0.113.9", dport=55), 3) == 1


def test_a_limited_rule_after_the_winner_does_not_pay():
    """A plain rule (a lone --src) that orders first decides; the limited
    rule after it (one bucket for the rule) must not take tokens for frames
    it never decided: another source then still finds the bucket full."""
    rules = [rule("pass", 0, priority=10, src="192.0.2.1"),
             rule("drop", 1, priority=20, limit={"over": "1/s", "burst": "2", "per": "rule"}, proto="udp")]
    with program(rules) as bed:
        f = udp4(src="192.0.2.1")
        assert bed.run(f, 5) == [XDP_PASS] * 5
        assert bed.run(udp4(src="192.0.2.9"), 3) == [XDP_PASS, XDP_PASS, XDP_DROP]
        assert bed.hits() == {0: (5, 5 * len(f)), 1: (1, len(f))}


def sources(n: int, template: bytes) -> list[bytes]:
    """n frames like template (IPv4, no VLAN), each from its own source
    10.x.y.z (the bytes patched in: the program checks no checksum)."""
    return [template[:26] + (0x0A000000 + i + 1).to_bytes(4, "big") + template[30:] for i in range(n)]


@pytest.mark.matrix
def test_the_ceiling_holds_against_spoofed_sources():
    """--over 1/h --burst 1 --ceiling 5/s: a flood of 20 new sources passes
    5 (the ceiling's burst: one second of it), each with a bucket of its
    own; 15 go over the ceiling, and their keys never enter the table. A
    source already in the table is not charged to the ceiling."""
    with program([rule("drop", 0, limit={"over": "1/h", "burst": "1", "ceiling": "5/s"}, proto="udp")]) as bed:
        flood = sources(20, udp4())
        got = [bed.run(f)[0] for f in flood]
        assert got == [XDP_PASS] * 5 + [XDP_DROP] * 15
        assert bed.limit_stats(0) == (5, 5 * len(flood[0]), 5, 15)
        assert bed.keys() == {0: 5}
        # A known source goes over its own bucket (burst 1, spent), not the ceiling's.
        assert bed.run(flood[0]) == [XDP_DROP]
        assert bed.limit_stats(0)[3] == 15
        assert bed.hits() == {0: (16, 16 * len(flood[0]))}


@pytest.mark.matrix
def test_each_rule_has_a_table_of_its_own_that_another_rules_flood_cannot_churn():
    """Rule 0 (--table 16, no ceiling) takes a flood of 200 new sources:
    each passes, its table holds at most 16 keys and the rest are evicted.
    Rule 1's source, its bucket spent before the flood, is still in rule 1's
    own table afterwards: still over. A --per rule rule's one bucket has a
    table of the least size."""
    rules = [rule("drop", 0, limit={"over": "1/h", "burst": "1", "ceiling": "none", "table": "16"}, dport="53"),
             rule("drop", 1, limit={"over": "1/h", "burst": "1"}, dport="54"),
             rule("drop", 2, limit={"over": "1/h", "burst": "1", "per": "rule"}, dport="55")]
    with program(rules) as bed:
        assert bed.sizes() == {0: 16, 1: TABLE_DEFAULT, 2: TABLE_MIN}
        spent = udp4(src="192.0.2.77", dport=54)
        assert bed.run(spent, 2) == [XDP_PASS, XDP_DROP]
        # 200 sources: twelve times the table, enough to churn it.
        flood = sources(200, udp4(dport=53))
        assert sum(libbpf.prog_test_run(bed.fd, f).retval == XDP_PASS for f in flood) == 200
        keys = bed.keys()
        assert keys[0] <= 16 and bed.limit_stats(0)[2] == 200  # 200 added, at least 184 evicted
        assert keys[1] == 1 and bed.run(spent, 1) == [XDP_DROP]
        assert bed.run(udp4(dport=55), 2) == [XDP_PASS, XDP_DROP] and keys.get(2, 0) == 0
        assert bed.keys()[2] == 1


def test_without_a_ceiling_a_flood_churns_the_table_and_the_evictions_show_it():
    """--ceiling none: 70,000 new sources each pass (a full bucket each: what
    spoofing buys without a ceiling); the table holds at most its 65,536
    keys, and the keys added less the keys present are the evictions."""
    n = 70_000
    with program([rule("drop", 0, limit={"over": "1/h", "burst": "1", "ceiling": "none"}, proto="udp")]) as bed:
        flood = sources(n, udp4())
        assert sum(libbpf.prog_test_run(bed.fd, f).retval == XDP_PASS for f in flood) == n
        within, _, new_keys, ceiling_over = bed.limit_stats(0)
        assert (within, new_keys, ceiling_over) == (n, n, 0)
        present = bed.keys()[0]
        assert present <= TABLE_DEFAULT and n - present >= n - TABLE_DEFAULT


def test_a_grown_layout_takes_over_every_table():
    """A layout of more slots makes its own buckets map (lbuckets_<slots>),
    holding the very tables of the one it replaces: the buckets survive a
    program that grew. sync then drops the table of a slot no rule holds."""
    from dataclasses import replace

    rules = [rule("drop", 0, limit={"over": "1/h", "burst": "1", "table": "64"}, dport="53"),
             rule("drop", 3, limit={"over": "1/h", "burst": "1", "per": "rule"}, dport="54")]
    with program(rules) as bed:
        old = f"{bed.dir}/{bed.layout.pin_buckets()}"
        assert bed.run(udp4(dport=53), 2) == [XDP_PASS, XDP_DROP]
        grown = replace(bed.layout, slots=bed.layout.slots * 2)
        new = limit_tables.prepare(bed.dir, grown)
        assert new.endswith(f"lbuckets_{grown.slots}") and new != old
        assert limit_tables.memory(new) == limit_tables.memory(old) and sorted(limit_tables.memory(new)) == [0, 3]
        with libbpf.opened(old) as a, libbpf.opened(new) as b:
            same = [libbpf.map_lookup(a, bytes(4), 4), libbpf.map_lookup(b, bytes(4), 4)]
        assert same[0] is not None and same[0] == same[1]  # the same table (its map id), not a copy
        assert limit_tables.count_keys(new, [0, 3]) == {0: 1, 3: 0}
        limit_tables.sync(new, rules[:1], set())
        assert sorted(limit_tables.memory(new)) == [0] and limit_tables.count_keys(new, [0]) == {0: 1}
