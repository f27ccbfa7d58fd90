"""A pure-Python reading of bpf/parse_kern.h: the class the XDP program gives
a frame, computed from its bytes in user space.

It is the oracle: `gen` reports what it sent in these classes, `selftest`
expects them, and the tests check the kernel's counts against it. It follows
the C rules exactly, including their edge cases (a cut-short header classes as
<family>/other; at most two VLAN tags; at most XDPCTL_IPV6_EXT_MAX extension
headers walked).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8

VLAN_MAX = 2
IPV6_EXT_MAX = 8

_HOPOPTS, _ROUTING, _FRAGMENT, _AH, _DSTOPTS = 0, 43, 44, 51, 60
_IPV6_EXT = {_HOPOPTS, _ROUTING, _FRAGMENT, _AH, _DSTOPTS}


@dataclass(frozen=True)
class Parsed:
    cls: str
    is_ip: bool
    ethertype: int = 0
    vlan_id: int | None = None
    l4proto: int | None = None
    l4_offset: int | None = None
    frag_later: bool = False
    ipv: int | None = None  # 4 or 6 once the fixed IP header is known good
    src: int | None = None  # addresses, as integers, when ipv is set
    dst: int | None = None
    src_mac: int | None = None
    dst_mac: int | None = None
    # Transport fields (xdpctl_parse_l4): None when the frame lacks them.
    sport: int | None = None
    dport: int | None = None
    tcp_flags: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None


def _v4_class(proto: int) -> str:
    return {6: "ipv4/tcp", 17: "ipv4/udp", 1: "ipv4/icmp"}.get(proto, "ipv4/other")


def _v6_class(proto: int) -> str:
    return {6: "ipv6/tcp", 17: "ipv6/udp", 58: "ipv6/icmpv6"}.get(proto, "ipv6/other")


def parse(frame: bytes) -> Parsed:
    """The frame as the program sees it: class, and the fields rules match."""
    p = _parse(frame)
    if len(frame) >= 14:
        p = replace(p, dst_mac=int.from_bytes(frame[0:6], "big"), src_mac=int.from_bytes(frame[6:12], "big"))
    return _parse_l4(frame, p)


def _parse_l4(frame: bytes, p: Parsed) -> Parsed:
    if p.l4_offset is None or p.frag_later:
        return p
    o = p.l4_offset
    if p.l4proto == 6 and len(frame) >= o + 14:
        return replace(p, sport=int.from_bytes(frame[o : o + 2], "big"),
                       dport=int.from_bytes(frame[o + 2 : o + 4], "big"), tcp_flags=frame[o + 13])
    if p.l4proto == 17 and len(frame) >= o + 4:
        return replace(p, sport=int.from_bytes(frame[o : o + 2], "big"),
                       dport=int.from_bytes(frame[o + 2 : o + 4], "big"))
    if (p.ipv, p.l4proto) in ((4, 1), (6, 58)) and len(frame) >= o + 2:
        return replace(p, icmp_type=frame[o], icmp_code=frame[o + 1])
    return p


def _parse(frame: bytes) -> Parsed:
    if len(frame) < 14:
        return Parsed("other", False)
    off = 14
    proto = int.from_bytes(frame[12:14], "big")
    vlan_id = None
    for i in range(VLAN_MAX):
        if proto not in (ETH_P_8021Q, ETH_P_8021AD):
            break
        if len(frame) < off + 4:
            return Parsed("other", False)
        if i == 0:
            vlan_id = int.from_bytes(frame[off : off + 2], "big") & 0x0FFF
        proto = int.from_bytes(frame[off + 2 : off + 4], "big")
        off += 4
    if proto == ETH_P_IP:
        return _parse_v4(frame, off, vlan_id)
    if proto == ETH_P_IPV6:
        return _parse_v6(frame, off, vlan_id)
    if proto == ETH_P_ARP:
        return Parsed("arp", False, proto, vlan_id)
    return Parsed("other", False, proto, vlan_id)


def _parse_v4(frame: bytes, off: int, vlan_id) -> Parsed:
    other = Parsed("ipv4/other", True, ETH_P_IP, vlan_id)
    if len(frame) < off + 20:
        return other
    version, ihl = frame[off] >> 4, frame[off] & 0x0F
    if version != 4 or ihl < 5 or len(frame) < off + ihl * 4:
        return other
    proto = frame[off + 9]
    frag_later = int.from_bytes(frame[off + 6 : off + 8], "big") & 0x1FFF != 0
    return Parsed(_v4_class(proto), True, ETH_P_IP, vlan_id, proto, off + ihl * 4, frag_later, ipv=4,
                  src=int.from_bytes(frame[off + 12 : off + 16], "big"),
                  dst=int.from_bytes(frame[off + 16 : off + 20], "big"))


def _parse_v6(frame: bytes, off: int, vlan_id) -> Parsed:
    if len(frame) < off + 40:
        return Parsed("ipv6/other", True, ETH_P_IPV6, vlan_id)
    other = Parsed("ipv6/other", True, ETH_P_IPV6, vlan_id, ipv=6,
                   src=int.from_bytes(frame[off + 8 : off + 24], "big"),
                   dst=int.from_bytes(frame[off + 24 : off + 40], "big"))
    nexthdr = frame[off + 6]
    cur = off + 40
    frag_later = False
    for _ in range(IPV6_EXT_MAX):
        if nexthdr not in _IPV6_EXT:
            break
        if len(frame) < cur + 8:
            return other
        hdrlen = frame[cur + 1]
        if nexthdr == _FRAGMENT:
            frag_later = int.from_bytes(frame[cur + 2 : cur + 4], "big") & 0xFFF8 != 0
            step = 8
        elif nexthdr == _AH:
            step = (hdrlen + 2) * 4
        else:
            step = (hdrlen + 1) * 8
        if len(frame) < cur + step:
            return other  # the header, as its length gives it, is cut short
        nexthdr = frame[cur]
        cur += step
    if nexthdr in _IPV6_EXT:
        return replace(other, frag_later=frag_later)
    return replace(other, cls=_v6_class(nexthdr), l4proto=nexthdr, l4_offset=cur, frag_later=frag_later)


def classify(frame: bytes) -> str:
    return parse(frame).cls
