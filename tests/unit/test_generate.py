"""gen's checks that need no root and no kernel: source networks, options
that would be ignored, and frames too long for the sending interface."""

from __future__ import annotations

import re

import pytest

from xdpctl.traffic import frames
from xdpctl.traffic.endpoints import Endpoints
from xdpctl.errors import BadInput
from xdpctl.traffic.generate import GenRequest, check_fits, parse_cidr, total, validate

EP = Endpoints("02:00:00:00:00:02", "02:00:00:00:00:01", "198.18.0.2", "198.18.0.1",
               "fd78:6470::2", "fd78:6470::1")


def test_networks_and_addresses_parse_and_host_bits_are_refused():
    assert str(parse_cidr("203.0.113.0/24")) == "203.0.113.0/24"
    assert str(parse_cidr("2001:db8::/32")) == "2001:db8::/32"
    assert parse_cidr("198.18.0.1").num_addresses == 1
    with pytest.raises(BadInput) as err:
        parse_cidr("203.0.113.9/24")
    assert str(err.value) == "--src 203.0.113.9/24 has host bits set; the network is 203.0.113.0/24"
    with pytest.raises(BadInput, match=r"^--dst '10\.0\.0\.0/33' is not an IPv4 or IPv6"):
        parse_cidr("10.0.0.0/33", "--dst")


@pytest.mark.parametrize("req, message", [
    (GenRequest(profile="mix", src_cidr="203.0.113.0/24"), "--src spreads the sources of the flood profiles"),
    (GenRequest(profile="ip", src_cidr="203.0.113.0/24"), "not of ip"),
    (GenRequest(pcap="/nonexistent.pcap", vlans=(5,), size=100), "drop --vlan/--size"),
    (GenRequest(rate=float("inf")), "--rate must be a positive number"),
    (GenRequest(rate=float("nan")), "--rate must be a positive number"),
    (GenRequest(duration=float("nan")), "--duration must be more than 0"),
    (GenRequest(count=0), "--count must be between 1"),
])
def test_validate_refuses(req, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        validate(req)


def test_validate_accepts_src_for_floods_and_defaults_the_count():
    req = GenRequest(profile="syn-flood", src_cidr="2001:db8:77::/48")
    validate(req)
    assert req.count == 1000
    req = GenRequest(duration=2.0)
    validate(req)
    assert req.count is None  # the duration alone bounds it


def test_frames_must_fit_the_mtu_plus_the_ethernet_header():
    check_fits(frames.build("udp-flood", EP, size=1514), "veth0", 1500, sized=True)
    with pytest.raises(BadInput, match=r"^a 1515-byte frame does not fit veth0 \(MTU 1500 .*smaller --size$"):
        check_fits(frames.build("udp-flood", EP, size=1515), "veth0", 1500, sized=True)
    # AF_PACKET allows an 802.1Q tag's four bytes more, but not an 802.1ad tag's.
    check_fits(frames.build("udp-flood", EP, vlans=(5,), size=1518), "veth0", 1500, sized=True)
    with pytest.raises(BadInput, match="1518-byte frame"):
        check_fits(frames.build("udp-flood", EP, vlans=(5, 6), size=1518), "veth0", 1500, sized=True)
    with pytest.raises(BadInput, match="leave the frame out of the capture"):
        check_fits([bytes(9100)], "peer0", 9000, sized=False)


def test_total_sums_the_classes_as_stats_does():
    per_class = {"ipv4/udp": {"sent": {"packets": 3, "bytes": 180}}, "arp": {"sent": {"packets": 1, "bytes": 42}}}
    assert total(per_class) == {"sent": {"packets": 4, "bytes": 222}}
