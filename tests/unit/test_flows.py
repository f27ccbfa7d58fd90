"""--established without a kernel: the match and its checks, its file key, the
layout that carries it exactly when a rule uses it, the flow settings and
their parsing, the flow table's records, the tables of `flows`, and the
one-line errors of the options."""

from __future__ import annotations

import io
import ipaddress
import struct

import pytest
from click.testing import CliRunner
from rich.console import Console

from xdpctl.cli import cli, render
from xdpctl.datapath import contract
from xdpctl.datapath.flow_table import (
    DEFAULT_SETTINGS,
    EgressRecord,
    Flow,
    FlowSettings,
    count_live,
    pack_key,
    parse_entries,
    parse_timeouts,
)
from xdpctl.datapath.layout import Layout
from xdpctl.errors import BadInput
from xdpctl.rules import config_file
from xdpctl.rules.model import ACTIONS, Rule, file_label, parse_match
from xdpctl.rules.plan import _text
from xdpctl.rules.tables import build


def established_rule(**more) -> Rule:
    return Rule(ACTIONS["pass"], parse_match({"established": True, **more}), 1000, False, 1, 1, 0)


# --- the match -----------------------------------------------------------------------


def test_the_match_is_a_kind_and_a_flag():
    m = parse_match({"established": True, "proto": "tcp"})
    assert m.established is True and m.kinds == contract.KIND_ESTABLISHED | contract.KIND_PROTO
    assert m.describe() == {"proto": "tcp", "established": True}
    assert parse_match({"established": None}).established is None  # the CLI flag not given
    r = established_rule(proto="udp", dport="53")
    back = Rule.unpack(r.pack())
    assert back.match == r.match and back.match.established is True


@pytest.mark.parametrize("values, fragment", [
    ({"established": True, "ethertype": "arp"}, "is not IP"),
    ({"established": True, "ethertype": "lldp"}, "is not IP"),
    ({"established": True, "proto": "gre"}, "only for TCP, UDP, ICMP and ICMPv6"),
    ({"established": True, "proto": "47"}, "--proto gre"),
    ({"established": True, "icmp_type": 8}, "echo replies and errors only"),
    ({"established": True, "proto": "icmp", "icmp_type": 129}, "echo replies and errors only"),
    ({"established": True, "proto": "icmpv6", "icmp_type": 0, "src": "2001:db8::/32"},
     "echo replies and errors only"),
])
def test_matches_it_never_holds_with_are_refused(values, fragment):
    with pytest.raises(BadInput, match=fragment):
        parse_match(values)


@pytest.mark.parametrize("values", [
    {"established": True, "icmp_type": 3},  # ICMP destination unreachable, or ICMPv6 time exceeded
    {"established": True, "proto": "icmp", "icmp_type": 0},
    {"established": True, "proto": "icmpv6", "icmp_type": 2},
    {"established": True, "ethertype": "ipv6", "proto": "tcp", "tcp_flags": "fin"},
    {"established": True, "vlan": 10, "src_mac": "02:00:00:00:00:01"},
])
def test_matches_it_holds_with(values):
    assert parse_match(values).established


def test_the_file_key_is_a_true_flag():
    with pytest.raises(BadInput, match="established = false is not a match"):
        parse_match({"established": False}, file_label)
    with pytest.raises(BadInput, match="is a flag"):
        parse_match({"established": "yes"}, file_label)


def test_a_file_round_trip():
    text = ('[interfaces.eth0]\npolicy = "deny"\nrules = [\n'
            '  { action = "pass", established = true },\n'
            '  { action = "drop", established = true, proto = "udp", priority = 5 },\n]\n')
    cfg = config_file.parse(text)
    specs = cfg.interfaces["eth0"].rules
    assert [s.match.established for s in specs] == [True, True]
    rules = [Rule(s.action, s.match, s.priority or 1000, s.priority is not None, i, i, i)
             for i, s in enumerate(specs, start=1)]
    dumped = config_file.dump([("eth0", "native", "deny", False, rules)])
    assert "{ action = \"pass\", established = true }" in dumped
    again = config_file.parse(dumped).interfaces["eth0"].rules
    assert [(s.action, s.match, s.priority) for s in again] == [(s.action, s.match, s.priority) for s in specs]
    with pytest.raises(BadInput, match=r"xdpctl.toml:2: established = false"):
        config_file.parse('[interfaces.eth0]\nrules = [{ action = "pass", established = false }]\n')


def test_rules_read_as_flags():
    r = established_rule(proto="tcp")
    assert _text(r) == "pass proto tcp established"


# --- the layout ---------------------------------------------------------------------


def test_the_kind_is_compiled_in_exactly_when_a_rule_uses_it():
    with_it = build([established_rule(), Rule(ACTIONS["drop"], parse_match({"proto": "udp"}), 1000, False, 2, 2, 1)])
    layout = Layout().grown(with_it.needs)
    assert layout.has_kind("ESTABLISHED") and layout.fits(with_it.needs)
    flags = dict(layout.defines())
    assert "XDPCTL_USE_ESTABLISHED" in flags and "XDPCTL_NEED_L4" in flags
    assert flags["XDPCTL_CAP_ESTABLISHED"] == "64"
    # Without an --established rule the layout no longer fits: it is grown
    # without the kind (other kinds stay, as they always do).
    without = build([Rule(ACTIONS["drop"], parse_match({"proto": "udp"}), 1000, False, 2, 2, 1)])
    assert not layout.fits(without.needs)
    smaller = layout.grown(without.needs)
    assert not smaller.has_kind("ESTABLISHED") and smaller.has_kind("PROTO") and smaller.tag == layout.tag + 1
    assert "XDPCTL_USE_ESTABLISHED" not in dict(smaller.defines())
    assert not layout.fits(build([]).needs)  # no rules at all: no lookup either
    assert Layout.unpack(layout.pack()) == layout


def test_the_tables_hold_a_two_valued_field():
    built = build([established_rule(), Rule(ACTIONS["drop"], parse_match({}), 1000, False, 2, 2, 1)])
    classes = built.values["ESTABLISHED"]
    assert list(classes.index) == [0, 1]  # no flow: the wildcard class; a flow: its own
    assert classes.bitmaps == [0b10, 0b11]  # the match-all rule everywhere, the flow rule only on 1
    layout = Layout().grown(built.needs)
    sections = {s.name: s for s in layout.sections()}
    assert sections["established"].size == 8


# --- settings and records ------------------------------------------------------------------


def test_timeouts_parse():
    assert parse_timeouts("tcp=300,udp=60,icmp=30,closing=10") == \
        {"tcp": 300, "udp": 60, "icmp": 30, "closing": 10}
    assert parse_timeouts(" UDP = 5 ") == {"udp": 5}


@pytest.mark.parametrize("text, fragment", [
    ("tcp=0", "from 1 to"),
    ("tcp=4294967296", "from 1 to"),
    ("udp=99999999999999999999999", "from 1 to"),
    ("udp=-1", "whole number"),
    ("udp=1.5", "whole number"),
    ("dns=5", "NAME=SECONDS"),
    ("tcp", "NAME=SECONDS"),
    ("tcp=1,tcp=2", "given twice"),
    ("", "needs timeouts"),
])
def test_bad_timeouts(text, fragment):
    with pytest.raises(BadInput, match=fragment):
        parse_timeouts(text)


def test_table_size():
    assert parse_entries("262144") == 262144 and parse_entries("1_024") == 1024
    for bad in ("1023", "16777217", "lots", "-5"):
        with pytest.raises(BadInput, match="--flow-table-size"):
            parse_entries(bad)


def test_settings_are_the_contracts_struct():
    assert DEFAULT_SETTINGS.describe_timeouts() == contract.FLOW_TIMEOUT_DEFAULTS_S
    assert DEFAULT_SETTINGS.entries == contract.FLOW_ENTRIES_DEFAULT == 262144
    s = DEFAULT_SETTINGS.with_timeouts({"udp": 5})
    raw = s.pack()
    assert len(raw) == contract.FLOW_CONFIG.size == 40
    assert struct.unpack_from("<4Q", raw) == (300 * 10**9, 5 * 10**9, 30 * 10**9, 10 * 10**9)
    assert FlowSettings.unpack(raw) == s


def test_a_flow_decodes_as_the_programs_wrote_it():
    key = pack_key(6, 6, "fd78:6470::1", 40000, "fd78:6470::2", 443)
    assert len(key) == contract.FLOW_KEY.size == 40
    assert key[:8] == bytes([6, 6]) + struct.pack("<HHH", 40000, 443, 0)
    value = contract.FLOW.pack(10**9, 3 * 10**9, 7, 700, contract.FLOW_CLOSING, 0)
    f = Flow.decode(key, value)
    assert (f.host, f.host_port, f.remote, f.remote_port) == \
        (ipaddress.ip_address("fd78:6470::1"), 40000, ipaddress.ip_address("fd78:6470::2"), 443)
    assert f.state == "closing" and f.live(DEFAULT_SETTINGS, 13 * 10**9) and not f.live(DEFAULT_SETTINGS, 14 * 10**9)
    d = f.describe(DEFAULT_SETTINGS, 5 * 10**9)
    assert d == {"proto": "tcp", "family": "ipv6", "host": "fd78:6470::1", "host_port": 40000,
                 "remote": "fd78:6470::2", "remote_port": 443, "icmp_id": None, "state": "closing",
                 "age_s": 4.0, "idle_s": 2.0, "expires_in_s": 8.0, "packets_back": 7, "bytes_back": 700}
    echo = Flow.decode(pack_key(4, 1, "198.18.0.1", 77, "198.18.0.2"), value)
    assert echo.describe(DEFAULT_SETTINGS, 5 * 10**9)["icmp_id"] == 77
    assert echo.describe(DEFAULT_SETTINGS, 5 * 10**9)["host_port"] is None
    assert echo.remote == ipaddress.ip_address("198.18.0.2")


def test_count_live_is_flow_live_on_every_timeout_and_boundary():
    """The exporter's count (no decode) against Flow.live, entry by entry:
    each timeout code, last_seen on, just inside and just past its limit."""
    settings = DEFAULT_SETTINGS.with_timeouts({"udp": 7})
    now = 1000 * 10**9
    key = pack_key(4, 17, "198.18.0.1", 1, "198.18.0.2", 2)
    values = []
    for code in range(len(contract.FLOW_TIMEOUTS)):
        limit = now - settings.timeouts[code] * 10**9
        for last in (limit - 1, limit, limit + 1, now, 0):
            values.append(contract.FLOW.pack(0, last, 0, 0, code, 0))
    expected = sum(Flow.decode(key, v).live(settings, now) for v in values)
    assert expected == 3 * len(contract.FLOW_TIMEOUTS)  # on, inside, now; not past, not 0
    assert count_live(values, settings, now) == expected
    assert count_live(values[:1], settings, now) == 0 and count_live([], settings, now) == 0


def test_the_egress_record():
    r = EgressRecord(12, 0, 1, 1, contract.EGRESS_OWN_QDISC, 1700000000)
    assert EgressRecord.unpack(r.pack()) == r and r.own_qdisc and len(r.pack()) == contract.EGRESS.size


def test_bpf_filter_options_are_read_from_their_bytes():
    """pyroute2 decodes neither TCA_BPF_ID nor TCA_BPF_TAG; netlink.py reads them."""
    from xdpctl.kernel import netlink

    def nla(kind: int, body: bytes) -> bytes:
        raw = struct.pack("<HH", 4 + len(body), kind) + body
        return raw + b"\0" * (-len(raw) % 4)

    body = nla(3, struct.pack("<I", 1)) + nla(7, b"xdpctl_egress\0") + nla(11, struct.pack("<I", 4242)) \
        + nla(10, bytes(8))
    blob = b"junk" + struct.pack("<HH", 4 + len(body), 2) + body

    class Options:
        data, offset, length = blob, 4, 4 + len(body)

    class Msg:
        def get_attr(self, name):
            return Options() if name == "TCA_OPTIONS" else None

    assert netlink._bpf_options(Msg()) == (4242, "xdpctl_egress")


# --- the command line ---------------------------------------------------------------------


runner = CliRunner()


@pytest.mark.parametrize("args, fragment", [
    (["attach", "eth0", "--flow-timeouts", "tcp=0"], "from 1 to"),
    (["attach", "eth0", "--flow-timeouts", "icmp=1e9"], "whole number"),
    (["attach", "eth0", "--flow-table-size", "12"], "from 1,024"),
    (["rule", "add", "eth0", "pass", "--established", "--ethertype", "arp"], "is not IP"),
    (["rule", "add", "eth0", "pass", "--established", "--proto", "esp"], "never part of a tracked flow"),
    (["bench", "--established", "--egress"], "each measure on their own"),
    (["bench", "--established", "lo"], "each measure on their own"),
    (["bench", "--actions", "--egress"], "measures rules of its own"),
    (["bench", "--actions", "--rules", "10"], "measures rules of its own"),
])
def test_bad_options_are_one_line(args, fragment):
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdpctl: error: ") and fragment in lines[0], result.stderr


def flows_data() -> dict:
    settings = DEFAULT_SETTINGS
    flows = [Flow.decode(pack_key(6, 6, "fd78:6470:ffff:ffff:ffff:ffff:ffff:1", 65535,
                                  "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
                         contract.FLOW.pack(0, 10**9, 987_654_321, 123_456_789_012, 0, 0)),
             Flow.decode(pack_key(4, 1, "198.18.0.1", 4242, "198.18.0.2"),
                         contract.FLOW.pack(0, 10**9, 1, 84, 2, 0))]
    return {"interfaces": [{
        "ifname": "enp129s0f1np1", "ifindex": 7, "established_rules": 1,
        "timeouts": settings.describe_timeouts(),
        "table": {"size": 262144, "entries": 3, "live": 2, "expired": 1},
        "egress": {"prog_id": 12345, "prog_name": "xdpctl_egress", "attached": True, "tc_prio": 1,
                   "tc_handle": 1, "qdisc": "clsact, made by xdpctl"},
        "flows": [f.describe(settings, 4000 * 10**9) for f in flows],
    }]}


def test_the_flows_table_fits_80_columns():
    console = Console(file=io.StringIO(), width=80, record=True)
    console.print(render.flows_table(flows_data()["interfaces"][0]["flows"]))
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= 80
    text = "\n".join(lines)
    assert "987.65M" in text and "198.18.0.1 id 4242" in text and "1h06m" in text


def test_print_flows(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(render, "_out", Console(file=out, width=80, highlight=False))
    render.print_flows(flows_data())
    text = out.getvalue()
    assert "2 live flows (1 expired) in a table of 262,144, egress prog 12345" in text
    data = flows_data()
    data["interfaces"][0].update(table=None, egress=None, flows=[])
    render.print_flows(data)
    assert "no flow table (no --established rule)" in out.getvalue()
