"""An independent reading of docs/classification.md, written from the document
and not from the code: the class of a frame, as the page says it must be.

It reads the frame through a cursor that raises when a header does not fit,
so "cut short" is one rule here rather than a check per field. The tests hold
both the C program and xdpctl/datapath/classify.py to it, on every truncation
of frames with IPv6 extension headers of several lengths and on frames the
kernel itself sent (tests/unit/test_classify_doc.py, tests/kernel/test_prog_run.py).

Also here: frames with extension headers of every length the document's
rules give (fragment 8; AH (len + 2) * 4; the others (len + 1) * 8), alone,
chained and behind VLAN tags.
"""

from __future__ import annotations

import struct


class CutShort(Exception):
    """A header the document says must be whole runs past the frame."""


class Cursor:
    def __init__(self, frame: bytes):
        self.frame = frame
        self.at = 0

    def take(self, n: int) -> bytes:
        """The next n bytes, which must all be in the frame."""
        if self.at + n > len(self.frame):
            raise CutShort
        out = self.frame[self.at : self.at + n]
        self.at += n
        return out


# "hop-by-hop (0), routing (43), fragment (44), destination options (60) and AH (51)"
EXTENSION_HEADERS = {0, 43, 44, 60, 51}
WALKED = 8  # "The program walks up to 8 extension headers"
VLAN_TPIDS = {0x8100, 0x88A8}
V4 = {6: "ipv4/tcp", 17: "ipv4/udp", 1: "ipv4/icmp"}
V6 = {6: "ipv6/tcp", 17: "ipv6/udp", 58: "ipv6/icmpv6"}


def doc_class(frame: bytes) -> str:
    c = Cursor(frame)
    try:
        c.take(12)  # destination and source MAC
        (ethertype,) = struct.unpack("!H", c.take(2))
    except CutShort:
        return "other"  # "frames under 14 bytes"
    tags = 0
    try:
        while ethertype in VLAN_TPIDS:
            tags += 1
            if tags > 2:
                return "other"  # "A frame with a third tag is other"
            c.take(2)
            (ethertype,) = struct.unpack("!H", c.take(2))
    except CutShort:
        return "other"  # a tag cut short: no EtherType to name a family
    if ethertype == 0x0800:
        return _ipv4(c)
    if ethertype == 0x86DD:
        return _ipv6(c)
    if ethertype == 0x0806:
        return "arp"
    return "other"


def _ipv4(c: Cursor) -> str:
    try:
        fixed = c.take(20)
        version, ihl = fixed[0] >> 4, fixed[0] & 0xF
        if version != 4 or ihl < 5:
            return "ipv4/other"  # "invalid"
        c.take(ihl * 4 - 20)  # "all of it, options included, inside the frame"
    except CutShort:
        return "ipv4/other"
    return V4.get(fixed[9], "ipv4/other")  # "Then the protocol field decides"


def _ipv6(c: Cursor) -> str:
    try:
        fixed = c.take(40)
        upper = fixed[6]
        walked = 0
        while upper in EXTENSION_HEADERS:
            if walked == WALKED:
                return "ipv6/other"  # "More than 8"
            start = c.take(2)
            nexthdr, hdrlen = start[0], start[1]
            if upper == 44:
                size = 8
            elif upper == 51:
                size = (hdrlen + 2) * 4
            else:
                size = (hdrlen + 1) * 8
            c.take(size - 2)  # the whole header, as its length says, or it is cut short
            upper = nexthdr
            walked += 1
    except CutShort:
        return "ipv6/other"
    return V6.get(upper, "ipv6/other")


# --- frames with extension headers of several lengths -------------------------

_SRC6 = bytes.fromhex("fd000000000000000000000000000002")
_DST6 = bytes.fromhex("fd000000000000000000000000000001")
_UDP = struct.pack("!HHHH", 40000, 53, 8 + 12, 0) + b"xdpctl-query"
_TCP = struct.pack("!HHIIBBHHH", 40000, 22, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
_ICMP6 = bytes([128, 0, 0, 0, 0, 1, 0, 1]) + b"ping"


def ext(kind: int, nexthdr: int, size: int) -> bytes:
    """An extension header of kind with the given total size, padded with
    zeros (PadN-free options are fine for a parser: it reads only the length)."""
    if kind == 44:
        assert size == 8
        return bytes([nexthdr, 0, 0, 0, 0, 0, 0, 9])
    if kind == 51:
        assert size % 4 == 0 and size >= 12
        return bytes([nexthdr, size // 4 - 2]) + bytes(size - 2)
    assert size % 8 == 0 and size >= 8
    return bytes([nexthdr, size // 8 - 1]) + bytes(size - 2)


def ipv6_frame(chain: list[tuple[int, int]], upper: int, payload: bytes, vlans: tuple[int, ...] = ()) -> bytes:
    """Ethernet (with tags), IPv6, the chain [(kind, size), ...], then payload."""
    eth = bytes.fromhex("020000000001020000000002")
    for i, vid in enumerate(vlans):
        eth += struct.pack("!HH", 0x88A8 if len(vlans) == 2 and i == 0 else 0x8100, vid)
    eth += b"\x86\xdd"
    body = b""
    kinds = [k for k, _ in chain]
    for i, (kind, size) in enumerate(chain):
        nxt = kinds[i + 1] if i + 1 < len(kinds) else upper
        body += ext(kind, nxt, size)
    body += payload
    first = kinds[0] if kinds else upper
    ip6 = struct.pack("!IHBB", 6 << 28, len(body), first, 64) + _SRC6 + _DST6
    return eth + ip6 + body


def extension_corpus() -> list[bytes]:
    """Frames whose extension headers come in every length class: 8, 12, 16,
    24, 40, 64 and 2048 bytes; alone, chained, tagged, each before UDP, TCP or
    ICMPv6."""
    uppers = [(17, _UDP), (6, _TCP), (58, _ICMP6)]
    chains = [
        [(0, 8)], [(0, 16)], [(0, 24)], [(60, 16)], [(43, 24)], [(43, 40)], [(43, 2048)],
        [(44, 8)], [(51, 12)], [(51, 16)], [(51, 24)],
        [(0, 8), (43, 40), (60, 24)],
        [(0, 16), (44, 8), (51, 12), (60, 64)],
    ]
    out = []
    for chain in chains:
        for upper, payload in uppers:
            out.append(ipv6_frame(chain, upper, payload))
    out.append(ipv6_frame([(0, 8), (43, 24)], 17, _UDP, vlans=(100,)))
    out.append(ipv6_frame([(43, 40)], 58, _ICMP6, vlans=(200, 100)))
    return out
