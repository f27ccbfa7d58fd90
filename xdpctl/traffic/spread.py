"""A flood's frames for many source addresses, from one frame: the source
address written in, and the IP header's and the L4 checksums corrected
incrementally (RFC 1624), so that a million frames take seconds, not the
minutes scapy would take to build each one.

Without scapy: frames.py builds the first frame and hands it here. The
frame is Ethernet (with its 802.1Q/802.1ad tags) then IPv4 without options
or IPv6 without extension headers, then TCP, UDP, ICMP or ICMPv6, as
frames.py builds a flood's frames.
"""

from __future__ import annotations

import ipaddress
import random
import struct

# The checksum's offset in each L4 header, and whether it covers the
# pseudo-header (and so the source address).
_L4_CSUM = {6: (16, True), 17: (6, True), 1: (2, False), 58: (2, True)}


def _sum16(data: bytes) -> int:
    """The ones' complement sum of data's 16-bit words, folded."""
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _fixed(csum: int, old: int, new: int) -> int:
    """A checksum over data whose words summed to old, now summing to new
    (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m'))."""
    total = (~csum & 0xFFFF) + (~old & 0xFFFF) + new
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def sources(net: ipaddress.IPv4Network | ipaddress.IPv6Network, n: int, rng: random.Random) -> list[int]:
    """n distinct source addresses of net, as integers: its host addresses in
    order when it has no more than n, else n drawn at random (the network's
    own address and, for IPv4, its broadcast address left out either way)."""
    first = int(net.network_address)
    size = net.num_addresses
    if size <= 2:
        return [first + i for i in range(size)]
    lo, hi = 1, size - 1 if net.version == 4 else size  # host offsets: [lo, hi)
    if hi - lo <= n:
        return [first + i for i in range(lo, hi)]
    picked: set[int] = set()
    while len(picked) < n:
        picked.add(rng.randrange(lo, hi))
    return [first + i for i in sorted(picked)]


class Spread(list):
    """The frames spread() made: they differ from frame only in the source
    address and the checksums, which no class depends on, so they all have
    frame's class (generate.py classifies one, not a million)."""

    def __init__(self, frame: bytes, frames: list[bytes]):
        super().__init__(frames)
        self.template = frame


def spread(frame: bytes, addresses: list[int]) -> Spread:
    """frame once per address, that address its IP source."""
    l3 = 14
    while frame[l3 - 2:l3] in (b"\x81\x00", b"\x88\xa8"):  # 802.1Q, 802.1ad tags
        l3 += 4
    ethertype = frame[l3 - 2:l3]
    if ethertype == b"\x08\x00":
        src_at, width, proto, l4 = l3 + 12, 4, frame[l3 + 9], l3 + (frame[l3] & 0x0F) * 4
        ip_csum_at = l3 + 10
    elif ethertype == b"\x86\xdd":
        src_at, width, proto, l4 = l3 + 8, 16, frame[l3 + 6], l3 + 40
        ip_csum_at = None
    else:
        raise ValueError(f"not an IP frame (ethertype {ethertype.hex()})")
    if proto not in _L4_CSUM:
        raise ValueError(f"no flood of IP protocol {proto}")
    l4_off, pseudo = _L4_CSUM[proto]
    l4_csum_at = l4 + l4_off
    old = _sum16(frame[src_at:src_at + width])
    ip_csum = struct.unpack_from("!H", frame, ip_csum_at)[0] if ip_csum_at is not None else 0
    l4_csum = struct.unpack_from("!H", frame, l4_csum_at)[0]
    buf = bytearray(frame)
    out = []
    for addr in addresses:
        raw = addr.to_bytes(width, "big")
        new = _sum16(raw)
        buf[src_at:src_at + width] = raw
        if ip_csum_at is not None:
            struct.pack_into("!H", buf, ip_csum_at, _fixed(ip_csum, old, new))
        if pseudo:
            csum = _fixed(l4_csum, old, new)
            if proto == 17 and csum == 0:
                csum = 0xFFFF  # UDP: 0 means "no checksum"; its ones' complement twin is sent instead
            struct.pack_into("!H", buf, l4_csum_at, csum)
        out.append(bytes(buf))
    return Spread(frame, out)
