"""xdpctl/traffic/spread.py: a flood's frames for many sources, written into
one frame with the checksums corrected incrementally. The oracle is scapy,
building each frame from scratch (its checksums computed whole)."""

from __future__ import annotations

import ipaddress
import random

import pytest

from xdpctl.traffic import frames, spread
from xdpctl.traffic.endpoints import Endpoints

EP = Endpoints(src_mac="02:00:00:00:00:01", dst_mac="02:00:00:00:00:02", src4="192.0.2.1", dst4="192.0.2.2",
               src6="2001:db8::1", dst6="2001:db8::2", sport=40000, dport=9)


@pytest.mark.parametrize("profile", ["syn-flood", "udp-flood", "icmp-flood"])
@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "2001:db8:77::/48"])
@pytest.mark.parametrize("vlans", [(), (5,), (100, 7)])
@pytest.mark.parametrize("size", [None, 200])
def test_each_frame_is_what_scapy_builds_for_its_source(profile, cidr, vlans, size):
    net = ipaddress.ip_network(cidr)
    rng = random.Random(7)
    addrs = spread.sources(net, 100, rng) + [int(net.network_address) + 1, int(net.broadcast_address) - 1]
    first = frames._pad(frames._flood(profile, EP, vlans, str(net.network_address)), size)
    got = spread.spread(first, addrs)
    want = [frames._pad(frames._flood(profile, EP, vlans, str(ipaddress.ip_address(a))), size) for a in addrs]
    assert got == want


def test_a_udp_checksum_that_comes_to_zero_is_sent_as_ffff():
    """Scapy, like RFC 768, sends a computed 0 as 0xffff (0 means "none")."""
    start = int(ipaddress.ip_address("10.0.0.0"))
    first = bytes(frames._flood("udp-flood", EP, (), "10.0.0.0"))
    got = spread.spread(first, list(range(start, start + 70000)))
    hits = [start + i for i, f in enumerate(got) if f[40:42] == b"\xff\xff"]
    assert hits  # one in 65,535 sums comes to zero
    for a in hits[:3]:
        assert got[a - start] == bytes(frames._flood("udp-flood", EP, (), str(ipaddress.ip_address(a))))


def test_sources_are_distinct_hosts_of_the_network():
    rng = random.Random(1)
    assert spread.sources(ipaddress.ip_network("203.0.113.0/30"), 10, rng) == [
        int(ipaddress.ip_address("203.0.113.1")), int(ipaddress.ip_address("203.0.113.2"))]
    assert len(spread.sources(ipaddress.ip_network("203.0.113.7/32"), 10, rng)) == 1
    big = ipaddress.ip_network("10.0.0.0/12")
    every = spread.sources(big, 1 << 20, rng)
    assert len(every) == (1 << 20) - 2 and every[0] == int(big.network_address) + 1  # neither network nor broadcast
    some = spread.sources(ipaddress.ip_network("2001:db8::/32"), 5000, rng)
    assert len(set(some)) == 5000 and all(ipaddress.ip_address(a) in ipaddress.ip_network("2001:db8::/32")
                                           for a in some)


def test_a_flood_has_as_many_sources_as_it_sends_up_to_the_caps():
    assert len(frames.build("udp-flood", EP, src_cidr="10.0.0.0/8", count=3000)) == 3000
    assert len(frames.build("udp-flood", EP, src_cidr="10.0.0.0/8", count=100)) == 100
    assert len(frames.build("udp-flood", EP, src_cidr="203.0.113.0/24", count=100000)) == 254
    sized = frames.build("udp-flood", EP, src_cidr="10.0.0.0/8", size=9000, count=None)
    assert len(sized) == frames.MAX_SPREAD_BYTES // 9000  # the memory cap, with jumbo frames


def test_not_an_ip_frame_is_refused():
    with pytest.raises(ValueError, match="not an IP frame"):
        spread.spread(bytes(60), [1])


def test_gen_counts_a_spread_by_its_templates_class():
    from xdpctl.datapath import classify
    from xdpctl.traffic.generate import tally

    for profile, cidr in (("syn-flood", "10.0.0.0/8"), ("icmp-flood", "2001:db8::/32")):
        built = frames.build(profile, EP, vlans=(3,), src_cidr=cidr, count=2000)
        assert isinstance(built, spread.Spread)
        sent = [2] * len(built)
        assert tally(built, sent) == tally(list(built), sent)  # as classified frame by frame
        assert {classify.classify(f) for f in built} == {classify.classify(built.template)}
