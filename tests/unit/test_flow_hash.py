"""The flow hash's reference (xdpctl/datapath/flow_hash.py): MurmurHash3 as
published, the words it takes from a frame, and the promises it keeps (the
kernel test tests/kernel/test_actions_prog_run.py checks the C against it)."""

from __future__ import annotations

import random

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Dot1Q, Ether

from xdpctl.datapath import flow_hash

ETH = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")


def arp(op: int = 1) -> bytes:
    """An ARP frame built from given fields only (scapy would ask the machine for the rest)."""
    return bytes(ETH / ARP(op=op, hwsrc="02:00:00:00:00:02", psrc="198.18.0.2", hwdst="00:00:00:00:00:00",
                           pdst="198.18.0.1"))


def words(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i : i + 4], "little") for i in range(0, len(raw), 4)]


def test_murmur3_x86_32_known_values():
    """MurmurHash3_x86_32, seed 0, of byte strings of whole words, as the
    reference implementation gives them (values from the mmh3 5.3.1 binding
    of Appleby's C, computed once for this test)."""
    flow = bytes([198, 18, 0, 2, 198, 18, 0, 1])  # 198.18.0.2 -> 198.18.0.1
    for raw, want in [
        (b"", 0x0),
        (b"test", 0xBA6BD213),
        (b"Hello, world", 0x6A728C54),
        (flow, 0x1D5C9047),
        (flow + (17).to_bytes(4, "little") + ((4000 << 16) | 53).to_bytes(4, "little"), 0x22D404FA),
    ]:
        assert flow_hash.murmur3_words(words(raw)) == want, raw


def test_words_are_addresses_then_protocol_and_ports():
    f = bytes(ETH / IP(src="198.18.0.2", dst="198.18.0.1") / UDP(sport=4000, dport=53))
    words = flow_hash.flow_words(f)
    assert words[:2] == [int.from_bytes(bytes([198, 18, 0, 2]), "little"), int.from_bytes(bytes([198, 18, 0, 1]), "little")]
    assert words[2:] == [17, (4000 << 16) | 53]
    tagged = bytes(ETH / Dot1Q(vlan=5) / IP(src="198.18.0.2", dst="198.18.0.1") / UDP(sport=4000, dport=53))
    assert flow_hash.flow_words(tagged) == words  # the tag is not part of the flow
    icmp = bytes(ETH / IP(src="198.18.0.2", dst="198.18.0.1") / ICMP())
    assert flow_hash.flow_words(icmp) == words[:2]  # other protocols: addresses only
    assert flow_hash.flow_words(arp()) == []  # no addresses: no words


def test_frames_of_one_flow_hash_alike_and_fragments_stay_together():
    a = bytes(ETH / IP(src="198.18.0.2", dst="198.18.0.1") / TCP(sport=4000, dport=80, flags="S"))
    b = bytes(ETH / IP(src="198.18.0.2", dst="198.18.0.1", ttl=3) / TCP(sport=4000, dport=80, flags="A") / (b"y" * 300))
    assert flow_hash.flow_hash(a) == flow_hash.flow_hash(b)
    first = bytes(ETH / IP(src="198.18.0.2", dst="198.18.0.1", flags="MF") / UDP(sport=4000, dport=53) / b"x")
    later = bytes(ETH / IP(src="198.18.0.2", dst="198.18.0.1", frag=10, proto=17) / b"rest")
    assert flow_hash.flow_words(first) == flow_hash.flow_words(later)
    assert len(flow_hash.flow_words(first)) == 2
    v6 = bytes(ETH / IPv6(src="fd78:6470::2", dst="fd78:6470::1") / UDP(sport=1, dport=2))
    v6_frag = bytes(ETH / IPv6(src="fd78:6470::2", dst="fd78:6470::1") / IPv6ExtHdrFragment() / UDP(sport=1, dport=2))
    assert len(flow_hash.flow_words(v6)) == 10 and len(flow_hash.flow_words(v6_frag)) == 8


def test_picks_spread_evenly():
    """10,000 random UDP flows over 3 targets: each gets a third, within 5%."""
    rng = random.Random(7)
    template = bytes(ETH / IP(src="10.0.0.1", dst="198.18.0.1") / UDP(sport=1024, dport=53))
    counts = [0, 0, 0]
    for _ in range(10_000):
        f = bytearray(template)
        f[26:30] = bytes([10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)])  # the source
        f[34:36] = rng.randrange(1024, 65536).to_bytes(2, "big")  # the source port
        counts[flow_hash.pick(bytes(f), 3)] += 1
    assert all(abs(c - 10_000 / 3) < 0.05 * 10_000 / 3 for c in counts), counts
    assert flow_hash.pick(arp(), 3) == flow_hash.pick(arp(2), 3)
    assert flow_hash.pick(arp(), 1) == 0
