"""Rate limits (issue 13): reading --over and its companions, the file keys,
and the token bucket's integer arithmetic (the reference bpf/limit_kern.h
is held to), with exact counts worked out by hand."""

from __future__ import annotations

import errno
import os

import pytest
from click.testing import CliRunner

from xdpctl.cli import cli
from xdpctl.errors import BadInput
from xdpctl.rules import limits
from xdpctl.rules.config_file import dump, parse
from xdpctl.rules.limits import NS, Bucket, BucketState, Per, parse_duration, parse_per, parse_rate
from xdpctl.rules.model import ACTIONS, Rule, cli_label, parse_limit, parse_match

UDP53 = parse_match({"proto": "udp", "dport": "53"})


def limit(**values):
    return parse_limit(values, UDP53)


# --- rates ------------------------------------------------------------------------


@pytest.mark.parametrize("text, amount, period, unit, shown", [
    ("1000/s", 1000, 1, "frames", "1000/s"),
    (" 30 / min ", 30, 60, "frames", "30/min"),
    ("5/hour", 5, 3600, "frames", "5/h"),
    ("20mbit/s", 20_000_000, 1, "bits", "20mbit/s"),
    ("1500kbit/s", 1_500_000, 1, "bits", "1500kbit/s"),
    ("10KBytes/second", 10_000, 1, "bytes", "10kbytes/s"),
    ("3gbytes/s", 3_000_000_000, 1, "bytes", "3gbytes/s"),
    ("1000000bit/s", 1_000_000, 1, "bits", "1mbit/s"),
])
def test_rates_read_and_write_back(text, amount, period, unit, shown):
    rate = parse_rate(text)
    assert (rate.amount, rate.period, rate.unit, str(rate)) == (amount, period, unit, shown)
    assert parse_rate(str(rate)) == rate


@pytest.mark.parametrize("text, fragment", [
    ("0/s", "a rate of 0"),
    ("0kbit/s", "a rate of 0"),
    ("10/fortnight", "'fortnight' is not a unit of time"),
    ("10tbit/s", "is not a rate"),
    ("10mbit/min", "per second"),
    ("ten/s", "is not a rate"),
    ("-5/s", "is not a rate"),
    ("1.5/s", "is not a rate"),
    ("", "is not a rate"),
])
def test_bad_rates_are_one_sentence(text, fragment):
    with pytest.raises(BadInput, match=fragment) as exc:
        parse_rate(text)
    assert "\n" not in str(exc.value)


# --- what goes with --over -------------------------------------------------------------


def test_defaults_are_one_second_of_the_rate_per_source():
    lim = limit(over="1000/s")
    assert (lim.burst, lim.per, lim.table, lim.block) == (1000, Per("src"), 65536, 0)
    assert lim.ceiling == parse_rate("64000/s")
    assert limit(over="30/min").burst == 1  # half a frame a second: at least one
    assert limit(over="20mbit/s").burst == 20_000_000  # bits, for a bit rate
    assert limit(over="8kbit/s").burst == 1514 * 8  # at least one full frame


@pytest.mark.parametrize("values, fragment", [
    ({"burst": "5"}, "--burst needs --over"),
    ({"block": "10m"}, "--block needs --over"),
    ({"per": "flow"}, "--per needs --over"),
    ({"over": "10/s", "burst": "0"}, "--burst 0 lets no frame through"),
    ({"over": "10/s", "burst": "5k"}, "whole number of frames"),
    ({"over": "10/s", "per": "src/33"}, "an IPv4 prefix is 1 to 32 bits"),
    ({"over": "10/s", "per": "dst"}, "is not src, src/N"),
    ({"over": "10/s", "per": "rule", "table": "100"}, "one bucket for the rule"),
    ({"over": "10/s", "per": "rule", "ceiling": "100/s"}, "one bucket for the rule"),
    ({"over": "10/s", "table": "8"}, "from 16 to 4,194,304"),
    ({"over": "10/s", "table": "99999999"}, "from 16 to 4,194,304"),
    ({"over": "1000/s", "ceiling": "10/s"}, "below --over"),
    ({"over": "1mbit/s", "ceiling": "100/s"}, "must count what --over"),
    ({"over": "10/s", "block": "0s"}, "no time at all"),
    ({"over": "10/s", "block": "3651d"}, "longer than 3650 days"),
    ({"over": "10/s", "block": "99999999999999999999999h"}, "longer than 3650 days"),
    ({"over": "10/s", "block": "10 minutes"}, "not a duration"),
])
def test_what_does_not_hold_together_is_refused(values, fragment):
    with pytest.raises(BadInput, match=fragment):
        limit(**values)


def test_per_prefix_follows_the_rules_family():
    v4, v6, both = parse_match({"src": "10.0.0.0/8"}), parse_match({"dst": "2001:db8::/32"}), UDP53
    assert parse_limit({"over": "1/s", "per": "src/24"}, v4).per == Per("src", 24, 0)
    assert parse_limit({"over": "1/s", "per": "src/64"}, v6).per == Per("src", 0, 64)
    assert parse_limit({"over": "1/s", "per": "src/24"}, both).per == Per("src", 24, 64)
    assert parse_limit({"over": "1/s", "per": "src/20,48"}, both).per == Per("src", 20, 48)
    with pytest.raises(BadInput, match="matches IPv4 only; write src/24"):
        parse_limit({"over": "1/s", "per": "src/24,64"}, v4)
    with pytest.raises(BadInput, match="1 to 128"):
        parse_per("src/129", 6)
    for text, family, shown in (("src/24", 4, "src/24"), ("src/64", 6, "src/64"), ("src/24", None, "src/24,64"),
                                ("src/20,48", None, "src/20,48"), ("flow", None, "flow")):
        assert str(parse_per(text, family)) == shown
        assert parse_per(shown, family) == parse_per(text, family)


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("10m", 600), ("1h", 3600), ("2d", 172800),
                                           ("1h30m", 5400), ("45", 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(limits.show_duration(seconds)) == seconds


def test_a_limit_reads_back_from_what_it_describes():
    for values in ({"over": "1000/s"}, {"over": "20mbit/s", "per": "src/24", "burst": "3000000"},
                   {"over": "200/s", "burst": "50", "per": "flow", "block": "10m", "ceiling": "none"},
                   {"over": "100000/s", "per": "rule"}, {"over": "7/min", "table": "1024", "ceiling": "70/min"}):
        lim = limit(**values)
        assert parse_limit(lim.describe(), UDP53) == lim


# --- the bucket ---------------------------------------------------------------------


def run(bucket: Bucket, times_ns, length=100) -> list[bool]:
    """Whether each frame, at each time, goes over (one key's bucket)."""
    state = BucketState.new(bucket, times_ns[0])
    return [state.over(bucket, t, length) for t in times_ns]


def test_a_burst_faster_than_the_rate_passes_burst_then_the_rate():
    # 1000/s, burst 50: 200 frames 100 us apart (10,000/s) over 20 ms.
    bucket = limit(over="1000/s", burst="50").bucket()
    over = run(bucket, [i * 100_000 for i in range(200)])
    within = [i for i, o in enumerate(over) if not o]
    # The first 50 from the full bucket, and one more for each whole
    # millisecond since the first: by frame i (at i/10 ms), 50 + i // 10.
    assert within[:50] == list(range(50))
    assert [sum(not o for o in over[: i + 1]) for i in range(200)] == [min(i + 1, 50 + i // 10)
                                                                      for i in range(200)]
    assert len(within) == 50 + 19  # 19.9 ms: 19 whole frames refilled


def test_a_byte_rate_charges_each_frame_its_length():
    # 8kbit/s = 1000 bytes/s, burst 3000 bytes: 1000-byte frames every 100 ms.
    bucket = limit(over="8kbit/s", burst=str(3000 * 8)).bucket()
    over = run(bucket, [i * 100_000_000 for i in range(30)], length=1000)
    within = [i for i, o in enumerate(over) if not o]
    # Three from the burst, then one a second (every 10th frame).
    assert within == [0, 1, 2, 10, 20]


def test_a_frame_over_takes_nothing_from_the_bucket():
    bucket = limit(over="1/s", burst="1").bucket()
    state = BucketState.new(bucket, 0)
    assert not state.over(bucket, 0, 60)
    for t in range(1, 1000):  # 999 frames over, within the first second
        assert state.over(bucket, t * 1000, 60)
    assert not state.over(bucket, NS, 60)  # one second after the first: one token back


def test_long_idle_fills_the_bucket_and_no_more():
    bucket = limit(over="1000/s", burst="10").bucket()
    state = BucketState.new(bucket, 0)
    for _ in range(10):
        state.over(bucket, 0, 60)
    ten_years = 10 * 365 * 86400 * NS
    assert state.over(bucket, 0, 60)
    within = sum(not state.over(bucket, ten_years, 60) for _ in range(20))
    assert within == 10 and state.tokens < bucket.cost
    assert state.tokens + bucket.fill_ns * bucket.refill < 1 << 63  # the refill never overflows


@pytest.mark.parametrize("text", ["999999937/s", "999999937/h", "10gbit/s", "4gbytes/s", "1/h"])
def test_the_arithmetic_stays_in_64_bits_for_every_rate_it_takes(text):
    rate = parse_rate(text)
    bucket = Bucket.of(rate, limits.default_burst(rate))
    worst = max(bucket.capacity, bucket.frame_cost(limits.FRAME_BYTES_MAX))
    assert worst < 1 << 62 and bucket.capacity + bucket.fill_ns * bucket.refill < 1 << 63


def test_rates_past_the_arithmetic_are_refused():
    with pytest.raises(BadInput, match="beyond the bucket's 64-bit arithmetic"):
        limit(over="999999937/h", burst="999999937")
    with pytest.raises(BadInput, match="beyond the bucket's 64-bit arithmetic"):
        parse_rate("99999999999gbytes/s")


def test_a_bucket_is_exact_for_a_rate_that_does_not_divide_a_second():
    bucket = limit(over="3/s", burst="1").bucket()  # one frame each 333,333,333.3 ns
    state = BucketState.new(bucket, 0)
    assert not state.over(bucket, 0, 60)
    assert state.over(bucket, 333_333_333, 60)  # a third of a nanosecond short
    assert not state.over(bucket, 333_333_334, 60)
    # Over 30 s, exactly 90 frames (the first from the burst).
    state = BucketState.new(bucket, 0)
    assert sum(not state.over(bucket, t * 1000_000, 60) for t in range(30_000)) == 90


# --- the file, and the command line --------------------------------------------------


def test_file_keys_read_and_write_back():
    text = """
[interfaces.eth0]
rules = [
  { action = "drop", over = "1000/s", proto = "udp", dport = 53 },
  { action = "drop", over = "20mbit/s", per = "src/24", dst = "198.51.100.7" },
  { action = "drop", over = "50/s", block = "10m", burst = 5, proto = "tcp", dport = 22 },
  { action = "drop", over = "100000/s", per = "rule", proto = "udp" },
]
"""
    conf = parse(text)
    specs = conf.interfaces["eth0"].rules
    assert [str(s.limit.rate) for s in specs] == ["1000/s", "20mbit/s", "50/s", "100000/s"]
    assert specs[2].limit.block == 600 and specs[2].limit.burst == 5
    rules = [Rule(s.action, s.match, id=i + 1, seq=i + 1, slot=i, limit=s.limit) for i, s in enumerate(specs)]
    again = parse(dump([("eth0", "native", "allow", False, rules)])).interfaces["eth0"].rules
    assert [s.identity for s in again] == [s.identity for s in specs]


@pytest.mark.parametrize("rule, fragment", [
    ('{ action = "drop", burst = 5 }', ":4: burst needs over"),
    ('{ action = "drop", over = "0/s" }', ":4: over '0/s' is a rate of 0"),
    ('{ action = "drop", over = 1000 }', ":4: over 1000 is not a rate"),
    ('{ action = "drop", over = "10/s", per = "src/33" }', ":4: per src/33"),
    ('{ action = "drop", over = "10/s", block = true }', ":4: block must be a duration"),
])
def test_bad_file_keys_name_their_line(rule, fragment):
    with pytest.raises(BadInput, match=fragment):
        parse(f"\n[interfaces.eth0]\nrules = [\n  {rule},\n]\n", "x.toml")


def test_the_same_rule_with_two_limits_is_two_rules():
    a = Rule(ACTIONS["drop"], UDP53, limit=limit(over="10/s"))
    b = Rule(ACTIONS["drop"], UDP53, limit=limit(over="20/s"))
    assert a.identity != b.identity != Rule(ACTIONS["drop"], UDP53).identity


def test_burst_without_over_is_refused_in_one_line():
    r = CliRunner().invoke(cli, ["rule", "add", "eth0", "drop", "--burst", "5"])
    assert r.exit_code == 2 and r.stderr.startswith("xdpctl: error: --burst needs --over")
    assert len(r.stderr.strip().splitlines()) == 1


def test_more_limited_rules_than_a_frame_consults_are_refused():
    from xdpctl.datapath import contract
    from xdpctl.lifecycle import ruleops

    rules = [Rule(ACTIONS["drop"], parse_match({"dport": str(p)}), id=p, seq=p, slot=p, limit=limit(over="1/s"))
             for p in range(1, contract.LIMIT_K + 2)]
    ruleops.check_limits("eth0", rules[:-1])
    with pytest.raises(ruleops.RuleLimit, match=f"at most {contract.LIMIT_K} per interface"):
        ruleops.check_limits("eth0", rules)
    text = "\n[interfaces.eth0]\nrules = [\n" + "".join(
        f'  {{ action = "drop", over = "1/s", dport = {p} }},\n' for p in range(1, contract.LIMIT_K + 2)) + "]\n"
    with pytest.raises(BadInput, match=f"x.toml:{4 + contract.LIMIT_K}: more than {contract.LIMIT_K} rules with over"):
        parse(text, "x.toml")


def test_a_limited_rule_is_never_plain():
    """A lone --src with --over must be in the bitmaps: the search has to be
    able to go past it when the frame is within the rate."""
    from xdpctl.datapath import contract
    from xdpctl.rules.tables import build

    src = parse_match({"src": "10.0.0.0/8"})
    built = build([Rule(ACTIONS["drop"], src, id=1, seq=1, slot=0, limit=parse_limit({"over": "1/s"}, src)),
                   Rule(ACTIONS["drop"], src, id=2, seq=2, slot=1)])
    assert [r.id for r in built.general] == [1] and [r.id for r in built.plain] == [2]
    assert built.needs.actions & contract.FEAT_LIMITS


def test_cli_labels_are_the_options():
    assert cli_label("over") == "--over" and cli_label("block") == "--block"


def test_a_limit_survives_the_rules_map():
    """struct xdpctl_rule's appended fields (ABI 4) hold every limit, and none."""
    for values in ({"over": "1000/s"}, {"over": "20mbit/s", "per": "src/24", "ceiling": "none", "block": "1h"},
                   {"over": "7/min", "per": "flow", "table": "1024", "ceiling": "10kbit/s"[:0] or "70/min"},
                   {"over": "5/s", "per": "rule"}):
        rule = Rule(ACTIONS["drop"], UDP53, id=3, seq=4, slot=5, limit=limit(**values))
        assert Rule.unpack(rule.pack()) == rule
    plain = Rule(ACTIONS["drop"], UDP53, id=1, seq=1, slot=0)
    assert Rule.unpack(plain.pack()) == plain


def test_the_datapath_bucket_is_the_reference_bucket():
    from xdpctl.datapath import contract

    lim = limit(over="8kbit/s", per="src/24")
    refill, cost, capacity, fill_ns, flags, per, v4, v6, _, *ceiling, block_ns = contract.LIMIT.unpack(
        limits.datapath(lim))
    assert block_ns == 0 and contract.LIMIT.unpack(limits.datapath(limit(over="1/s", block="10m")))[-1] == 600 * NS
    b, c = lim.bucket(), lim.ceiling_bucket()
    assert (refill, cost, capacity, fill_ns) == (b.refill, b.cost, b.capacity, b.fill_ns)
    assert ceiling == [c.refill, c.cost, c.capacity, c.fill_ns]
    assert flags == contract.LIMIT_ON | contract.LIMIT_OF_BYTES | contract.LIMIT_CEILING
    assert (per, v4, v6) == (contract.PER_SRC, 24, 64)
    unbounded = limit(over="1/s", ceiling="none")
    assert not contract.LIMIT.unpack(limits.datapath(unbounded))[4] & contract.LIMIT_CEILING
    assert limits.datapath(None) == bytes(contract.LIMIT.size)


def test_established_beside_limits_holds_fewer_general_rules():
    """At 16,384 general rules the verifier finds a program with both too
    large (variants limits-established-*): the cap is the one redirect has."""
    from xdpctl.datapath import contract
    from xdpctl.rules.model import MAX_GENERAL_ESTABLISHED_REDIRECT, general_limit

    est = Rule(ACTIONS["pass"], parse_match({"established": True}), id=1, seq=1, slot=0)
    lim = Rule(ACTIONS["drop"], UDP53, id=2, seq=2, slot=1, limit=limit(over="1/s"))
    assert general_limit([est, lim]) == (MAX_GENERAL_ESTABLISHED_REDIRECT,
                                         " when --established and --over rules are on it together")
    assert general_limit([lim]) == (contract.MAX_GENERAL, "")
    assert general_limit([est]) == (contract.MAX_GENERAL, "")


@pytest.mark.parametrize("text, fragment", [
    ("203.0.113.0/24", "is a prefix"), ("203.0.113.9/32", "is a prefix"), ("nope", "not an IPv4 or IPv6"),
    ("::ffff:192.0.2.1", "IPv4-mapped"), ("fe80::1%eth0", "names a zone"), ("", "not an IPv4 or IPv6"),
])
def test_a_ban_is_on_one_address(text, fragment):
    from xdpctl.lifecycle.bans import parse_address

    with pytest.raises(BadInput, match=fragment):
        parse_address(text)


def test_ban_addresses_are_keys_of_16_bytes():
    from xdpctl.lifecycle.bans import parse_address

    assert parse_address("203.0.113.9") == (4, bytes([203, 0, 113, 9]) + bytes(12))
    assert parse_address("2001:db8::9") == (6, bytes.fromhex("20010db8000000000000000000000009"))


def test_ban_add_refuses_bad_input_before_anything():
    r = CliRunner().invoke(cli, ["ban", "add", "eth0", "203.0.113.0/24", "--for", "1h"])
    assert r.exit_code == 2 and r.stderr.startswith("xdpctl: error: ADDRESS 203.0.113.0/24 is a prefix")
    r = CliRunner().invoke(cli, ["ban", "add", "eth0", "203.0.113.9", "--for", "forever"])
    assert r.exit_code == 2 and "--for 'forever' is not a duration" in r.stderr


def test_rule_list_shows_the_limit_and_what_it_saw():
    from rich.console import Console

    from xdpctl.cli.render import rules_table

    rule = Rule(ACTIONS["drop"], UDP53, id=1, seq=1, slot=0, limit=limit(over="1000/s", per="src/24"))
    d = rule.describe()
    d["hits"] = {"packets": 3, "bytes": 180}
    d["limit"] = {"within": {"packets": 1234, "bytes": 74040}, "keys": 2, "evictions": 0, "ceiling_over": 0}
    console = Console(width=200, record=True)
    console.print(rules_table({"rules": [d]}))
    text = console.export_text()
    assert "over 1000/s per src/24,64, 1,234 within, 2 of 65,536 keys, 0 evicted: proto udp dport 53" in text
    one = Rule(ACTIONS["drop"], UDP53, id=2, seq=2, slot=1, limit=limit(over="10/s", per="rule")).describe()
    one["hits"] = {"packets": 0, "bytes": 0}
    one["limit"] = {"within": {"packets": 5, "bytes": 300}, "keys": 1, "evictions": 0, "ceiling_over": 0}
    console.print(rules_table({"rules": [one]}))
    assert "over 10/s per rule, 5 within, 0 evicted: proto udp dport 53" in console.export_text()


def test_a_feature_the_layout_lacks_does_not_fit_even_with_no_rules():
    """`ban add` on a program without the ban list: the needs carry
    FEAT_BANS and no rule, and the layout must grow (a new program)."""
    from dataclasses import replace

    from xdpctl.datapath import contract
    from xdpctl.datapath.layout import Layout
    from xdpctl.rules.tables import build

    bans = replace(build([]).needs, actions=contract.FEAT_BANS)
    assert Layout().fits(build([]).needs) and not Layout().fits(bans)
    grown = Layout().grown(bans)
    assert grown.engine and grown.actions == contract.FEAT_BANS and grown.fits(bans) and grown.fits(build([]).needs)
    assert ("XDPCTL_BANS", None) in grown.defines()


@pytest.mark.parametrize("err", [errno.ENOMEM, errno.E2BIG, errno.EPERM])
def test_a_table_the_kernel_will_not_make_is_one_line_naming_table(monkeypatch, err):
    """A --table too large for the machine's memory: one line that says what
    to change, not an internal error."""
    from xdpctl.errors import KernelError
    from xdpctl.rules import limit_tables

    def refuse(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(limit_tables.libbpf, "map_create", refuse)
    with pytest.raises(KernelError, match=r"table of 4,194,304 keys .*smaller --table") as info:
        limit_tables._new_table(4194304)
    assert "\n" not in str(info.value) and str(info.value).endswith("nothing was changed")
    monkeypatch.setattr(limit_tables.libbpf, "map_create",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EBADF, "Bad file descriptor")))
    with pytest.raises(OSError):  # anything else is not the table's size: it stays what it is
        limit_tables._new_table(16)


def test_a_rules_table_is_its_table_or_the_least_for_one_bucket():
    from xdpctl.rules import limit_tables
    from xdpctl.rules.limits import TABLE_MIN

    assert limit_tables.entries(limit(over="10/s", table="1024")) == 1024
    assert limit_tables.entries(limit(over="10/s")) == 65536
    assert limit_tables.entries(limit(over="10/s", per="rule")) == TABLE_MIN
