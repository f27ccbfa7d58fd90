"""The pure-Python oracle classifies every frame of the mix as built, and
handles cut-short and malformed headers the way the C parser does."""

from __future__ import annotations

from collections import Counter

import pytest

from xdpctl.datapath import classify, contract
from xdpctl.traffic import frames

EP = frames.Endpoints("02:00:00:00:00:02", "02:00:00:00:00:01", "198.18.0.2", "198.18.0.1", "fd00::2", "fd00::1")

# What each frame of the mix is, by construction (frames._mix order).
MIX_CLASSES = [
    "ipv4/tcp", "ipv4/udp", "ipv4/icmp", "ipv4/other", "ipv4/udp", "ipv4/udp", "ipv4/udp",
    "ipv6/tcp", "ipv6/udp", "ipv6/icmpv6", "ipv6/udp", "ipv6/tcp", "ipv6/udp", "ipv6/other",
    "ipv4/udp", "ipv6/tcp", "ipv6/icmpv6", "arp", "other", "other", "ipv4/other",
]


def test_mix_classes_by_construction():
    mix = frames.build("mix", EP)
    assert [classify.classify(f) for f in mix] == MIX_CLASSES


def test_mix_covers_every_class():
    assert set(MIX_CLASSES) == set(contract.CLASSES)


def test_vlan_and_qinq_are_looked_through():
    mix = frames.build("mix", EP)
    parsed = [classify.parse(f) for f in mix]
    vlan = [p for p in parsed if p.vlan_id is not None]
    assert {p.vlan_id for p in vlan} == {100, 200}
    qinq = next(p for p in parsed if p.vlan_id == 200)
    assert qinq.cls == "ipv6/tcp"


def test_ipv4_options_move_the_transport_header():
    opts = frames.build("mix", EP)[4]
    p = classify.parse(opts)
    assert p.cls == "ipv4/udp" and p.l4_offset == 14 + 28  # router alert (4) + 4 NOPs


def test_fragments_are_classed_by_protocol_and_flagged():
    mix = frames.build("mix", EP)
    first, later = classify.parse(mix[5]), classify.parse(mix[6])
    assert first.cls == later.cls == "ipv4/udp"
    assert not first.frag_later and later.frag_later


def test_ipv6_extension_headers_walked():
    mix = frames.build("mix", EP)
    assert classify.parse(mix[10]).l4proto == 17  # hop-by-hop + destination options
    assert classify.parse(mix[11]).l4proto == 6   # routing
    assert classify.parse(mix[12]).l4proto == 17  # fragment


@pytest.mark.parametrize("index", range(len(MIX_CLASSES)))
def test_every_truncation_stays_in_family_or_other(index):
    frame = frames.build("mix", EP)[index]
    for n in range(len(frame) + 1):
        cls = classify.classify(frame[:n])
        assert cls in contract.CLASSES
        if n < 14:
            assert cls == "other"


def test_cut_short_headers_are_family_other():
    udp4 = frames.build("mix", EP)[1]
    assert classify.classify(udp4[: 14 + 19]) == "ipv4/other"
    assert classify.classify(udp4[: 14 + 20]) == "ipv4/udp"  # the class needs no transport bytes
    udp6 = frames.build("mix", EP)[8]
    assert classify.classify(udp6[: 14 + 39]) == "ipv6/other"
    hbh = frames.build("mix", EP)[10]
    assert classify.classify(hbh[: 14 + 40 + 7]) == "ipv6/other"


def test_bad_ipv4_version_or_ihl():
    udp4 = bytearray(frames.build("mix", EP)[1])
    udp4[14] = 0x44  # ihl 4 < 5
    assert classify.classify(bytes(udp4)) == "ipv4/other"
    udp4[14] = 0x65  # version 6 in an IPv4 EtherType
    assert classify.classify(bytes(udp4)) == "ipv4/other"


def test_three_vlan_tags_are_other():
    inner = frames.build("mix", EP)[1]
    tag = lambda tpid, vid: tpid.to_bytes(2, "big") + vid.to_bytes(2, "big")  # noqa: E731
    frame = inner[:12] + tag(0x88A8, 1)[:2] + tag(0, 1)[2:] + b"\x81\x00" + b"\x00\x02" + b"\x81\x00" + b"\x00\x03" + inner[12:]
    # the third tag's TPID is where the EtherType would be after two tags
    assert classify.classify(frame) == "other"


def test_profiles_have_the_classes_they_promise():
    count = lambda p: Counter(classify.classify(f) for f in frames.build(p, EP))  # noqa: E731
    assert set(count("ip")) <= {c for c in contract.CLASSES if c.startswith("ipv")}
    assert set(count("non-ip")) == {"arp", "other"}
    assert set(count("syn-flood")) == {"ipv4/tcp"}
    assert set(count("udp-flood")) == {"ipv4/udp"}
    assert set(count("icmp-flood")) == {"ipv4/icmp"}


def test_flood_spreads_sources_in_cidr():
    fs = frames.build("syn-flood", EP, src_cidr="203.0.113.0/24")
    srcs = {f[14 + 12 : 14 + 16] for f in fs}
    assert len(srcs) > 100
    assert all(s[:3] == bytes([203, 0, 113]) for s in srcs)


def test_size_pads_frames():
    fs = frames.build("udp-flood", EP, size=512)
    assert {len(f) for f in fs} == {512}
