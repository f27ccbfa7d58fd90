"""--established through BPF_PROG_TEST_RUN (no veth): the TC egress program
records what the host sends, the XDP program passes exactly the frames that
answer it, under --policy deny with `pass --established`.

Every case is a pair built as such (tests/kernel/flowbed.py): what the host
sent, and a frame that answers it or, changed in one field, does not. TCP,
UDP, ICMP echo and ICMP errors that quote a flow; IPv4 and IPv6; behind one
and two VLAN tags, IPv6 extension headers and IPv4 options; expiry,
closing, refresh and reopening; the counts a flow keeps; priorities and
combinations with other matches.
"""

from __future__ import annotations

import time

import pytest

from flowbed import (
    H4,
    R4,
    TC_ACT_UNSPEC,
    XDP_DROP,
    XDP_PASS,
    back,
    bed,
    frag_needed,
    out,
    ping4,
    ping4_back,
    ping6,
    ping6_back,
    tcp4,
    tcp4_back,
    tcp6,
    tcp6_back,
    time_exceeded4,
    time_exceeded6,
    too_big6,
    udp4,
    udp4_back,
    udp6,
    udp6_back,
    unreach6,
)
from scapy.layers.inet import IP, TCP, UDP, IPOption_NOP
from xdpctl.datapath import contract
from xdpctl.datapath.flow_table import FlowSettings
from xdpctl.datapath.program import FilterOptions
from xdpctl.rules.model import Rule, parse_match

pytestmark = pytest.mark.kernel


def rule(action: str, slot: int = 0, priority: int = 1000, seq: int = 1, **match) -> Rule:
    return Rule(contract.ACTION_PASS if action == "pass" else contract.ACTION_DROP, parse_match(match),
                priority, priority != 1000, slot + 1, seq, slot)


PASS_ESTABLISHED = [rule("pass", established=True)]


def test_the_egress_program_never_drops_or_decides():
    with bed(PASS_ESTABLISHED) as b:
        for frame in (out(tcp4()), out(udp6()), out(ping4()), b"\x00" * 14, out(IP(src=H4, dst=R4, proto=47))):
            assert b.send(frame) == TC_ACT_UNSPEC


PAIRS = [
    (tcp4(), tcp4_back(), tcp4_back(dport=40001)),
    (tcp4(), tcp4_back(), tcp4_back(src="198.18.0.9")),
    (tcp4(), tcp4_back(), udp4_back(sport=80, dport=40000)),  # same ports, other protocol
    (udp4(), udp4_back(), udp4_back(sport=54)),
    (tcp6(), tcp6_back(), tcp6_back(dport=40001)),
    (udp6(), udp6_back(), udp6_back(dport=5354)),
    (ping4(), ping4_back(), ping4_back(ident=78)),
    (ping4(), ping4_back(), ping4_back(type=8)),  # a request with the same id is not a reply
    (ping6(), ping6_back(), ping6_back(ident=79)),
]
PAIR_IDS = ["tcp4-port", "tcp4-address", "tcp4-proto", "udp4", "tcp6", "udp6", "echo4-id", "echo4-request", "echo6"]


def check_pair(b, sent, answer, unrelated) -> None:
    assert b.receive(back(answer)) == XDP_DROP  # nothing sent yet: deny
    assert b.send(out(sent)) == TC_ACT_UNSPEC
    assert b.receive(back(answer)) == XDP_PASS
    assert b.receive(back(unrelated)) == XDP_DROP


@pytest.mark.parametrize("sent,answer,unrelated", PAIRS, ids=PAIR_IDS)
def test_a_reply_passes_and_what_differs_is_dropped(sent, answer, unrelated):
    with bed(PASS_ESTABLISHED) as b:
        check_pair(b, sent, answer, unrelated)


@pytest.mark.parametrize("tags", [(100,), (100, 200)], ids=["802.1q", "qinq"])
def test_behind_vlan_tags(tags):
    with bed(PASS_ESTABLISHED) as b:
        b.send(out(tcp4()))
        b.send(out(udp6()))
        assert b.receive(back(tcp4_back(), tags)) == XDP_PASS
        assert b.receive(back(udp6_back(), tags)) == XDP_PASS
        assert b.receive(back(tcp4_back(dport=1), tags)) == XDP_DROP


def test_a_tagged_frame_out_is_recorded_as_an_untagged_one():
    from scapy.layers.l2 import Dot1Q, Ether

    with bed(PASS_ESTABLISHED) as b:
        b.send(bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=7) / tcp4()))
        assert b.receive(back(tcp4_back())) == XDP_PASS


def test_extension_headers_and_ip_options():
    with bed(PASS_ESTABLISHED) as b:
        b.send(out(tcp6()))
        b.send(out(tcp4()))
        assert b.receive(back(tcp6_back(ext=True))) == XDP_PASS
        with_options = IP(src=R4, dst=H4, options=[IPOption_NOP()] * 4) / TCP(sport=80, dport=40000, flags="A")
        assert b.receive(back(with_options)) == XDP_PASS


def test_a_later_fragment_carries_no_ports_and_answers_nothing():
    with bed(PASS_ESTABLISHED) as b:
        b.send(out(udp4()))
        first = IP(src=R4, dst=H4, flags="MF", frag=0) / UDP(sport=53, dport=5353) / (b"a" * 32)
        later = IP(src=R4, dst=H4, proto=17, frag=5) / (b"b" * 32)
        assert b.receive(back(first)) == XDP_PASS
        assert b.receive(back(later)) == XDP_DROP


ERRORS = [
    (udp4(), lambda s: frag_needed(s)),
    (tcp4(), lambda s: frag_needed(s, mtu=1280)),
    (tcp4(), lambda s: time_exceeded4(s)),
    (ping4(), lambda s: time_exceeded4(s)),  # traceroute with ICMP
    (tcp6(), lambda s: too_big6(s)),
    (udp6(), lambda s: time_exceeded6(s)),
    (tcp6(), lambda s: unreach6(s)),
    (ping6(), lambda s: too_big6(s)),
]
ERROR_IDS = ["udp4-frag-needed", "tcp4-frag-needed", "tcp4-ttl", "echo4-ttl", "tcp6-too-big", "udp6-hop-limit",
             "tcp6-port-unreach", "echo6-too-big"]


def check_error(b, sent, error) -> None:
    assert b.receive(back(error(sent))) == XDP_DROP  # quotes nothing the host sent yet
    b.send(out(sent))
    assert b.receive(back(error(sent))) == XDP_PASS


@pytest.mark.parametrize("sent,error", ERRORS, ids=ERROR_IDS)
def test_icmp_errors_that_quote_a_flow_pass(sent, error):
    with bed(PASS_ESTABLISHED) as b:
        check_error(b, sent, error)


@pytest.mark.matrix
def test_every_pair_and_error_on_one_bed():
    """The cases above on one pair of programs (one load each: the kernel
    matrix runs this in emulated VMs), the table emptied between cases; and
    behind VLAN tags."""
    with bed(PASS_ESTABLISHED) as b:
        for sent, answer, unrelated in PAIRS:
            b.clear()
            check_pair(b, sent, answer, unrelated)
        for sent, error in ERRORS:
            b.clear()
            check_error(b, sent, error)
        b.clear()
        b.send(out(tcp4()))
        for tags in ((100,), (100, 200)):
            assert b.receive(back(tcp4_back(), tags)) == XDP_PASS
            assert b.receive(back(tcp4_back(dport=1), tags)) == XDP_DROP


def test_icmp_errors_quoting_other_flows_or_cut_short_are_dropped():
    with bed(PASS_ESTABLISHED) as b:
        b.send(out(udp4()))
        assert b.receive(back(frag_needed(udp4(sport=5354)))) == XDP_DROP
        assert b.receive(back(frag_needed(IP(src=R4, dst=H4) / UDP(sport=53, dport=5353)))) == XDP_DROP  # reversed
        short = back(frag_needed(udp4()))[:-4]  # the quoted ports cut off
        assert b.receive(short) == XDP_DROP


def test_a_flow_counts_what_comes_back():
    with bed(PASS_ESTABLISHED) as b:
        b.send(out(udp4()))
        replies = [back(udp4_back()) for _ in range(3)] + [back(frag_needed(udp4()))]
        for frame in replies:
            assert b.receive(frame) == XDP_PASS
        b.receive(back(udp4_back(sport=99)))  # dropped: not the flow's
        (flow,) = b.flows()
        assert (str(flow.host), flow.host_port, str(flow.remote), flow.remote_port, flow.proto) == \
            (H4, 5353, R4, 53, 17)
        assert (flow.packets_in, flow.bytes_in) == (4, sum(len(f) for f in replies))
        assert flow.timeout == contract.FLOW_UDP and flow.last_seen >= flow.first_seen > 0


def test_expiry_refresh_closing_and_reopening():
    settings = FlowSettings((60, 1, 1, 1))  # udp, icmp and closing flows live 1 s
    with bed(PASS_ESTABLISHED, settings=settings) as b:
        b.send(out(udp4()))
        b.send(out(tcp4()))
        b.send(out(tcp4(sport=40002, flags="FA")))  # the host closes this one
        assert b.receive(back(udp4_back())) == XDP_PASS
        time.sleep(0.7)
        assert b.receive(back(udp4_back())) == XDP_PASS  # a reply refreshes the flow
        time.sleep(0.7)
        assert b.receive(back(udp4_back())) == XDP_PASS
        time.sleep(1.3)
        assert b.receive(back(udp4_back())) == XDP_DROP  # idle past its timeout
        assert b.receive(back(tcp4_back(dport=40002, flags="A"))) == XDP_DROP  # closing: 1 s
        assert b.receive(back(tcp4_back(flags="A"))) == XDP_PASS  # open TCP: 60 s
        # A FIN back puts the open flow under the closing timeout too.
        assert b.receive(back(tcp4_back(flags="FA"))) == XDP_PASS
        flow = next(f for f in b.flows() if f.host_port == 40000)
        assert flow.timeout == contract.FLOW_CLOSING
        # Sending again on the expired UDP flow opens it anew, its counts from zero.
        b.send(out(udp4()))
        assert b.receive(back(udp4_back())) == XDP_PASS
        flow = next(f for f in b.flows() if f.proto == 17)
        assert flow.packets_in == 1 and flow.timeout == contract.FLOW_UDP
        # A SYN on a closing tuple reopens it under the TCP timeout.
        b.send(out(tcp4(sport=40002, flags="S")))
        flow = next(f for f in b.flows() if f.host_port == 40002)
        assert flow.timeout == contract.FLOW_TCP and flow.packets_in == 0


def test_established_combines_with_other_matches_and_priorities():
    rules = [rule("drop", 0, priority=10, seq=1, established=True, proto="udp", sport="53"),
             rule("pass", 1, priority=20, seq=2, established=True),
             rule("pass", 2, priority=30, seq=3, proto="tcp", dport="22")]
    with bed(rules) as b:
        b.send(out(udp4()))
        b.send(out(tcp4()))
        assert b.receive(back(udp4_back())) == XDP_DROP  # established, but the drop rule comes first
        assert b.receive(back(tcp4_back())) == XDP_PASS
        assert b.receive(back(tcp4_back(dport=22, sport=50000, flags="S"))) == XDP_PASS  # new, port 22
        assert b.receive(back(tcp4_back(dport=23, sport=50000, flags="S"))) == XDP_DROP
        hits = b.hits()
        assert hits[0][0] == 1 and hits[1][0] == 1 and hits[2][0] == 1


def test_without_the_rule_the_program_has_no_lookup_and_allow_passes():
    """A rule set without --established compiles no flow lookup (the layout
    has no such kind), and the rules decide alone."""
    rules = [rule("drop", proto="udp")]
    with bed(rules, FilterOptions()) as b:
        assert not b.layout.kinds & contract.KIND_ESTABLISHED
        assert b.receive(back(tcp4_back())) == XDP_PASS
        assert b.receive(back(udp4_back())) == XDP_DROP
