"""A pure-Python reading of bpf/parse_kern.h: the class the XDP program gives
a frame, computed from its bytes in user space.

It is the oracle: `gen` reports what it sent in these classes, `selftest`
expects them, and the tests check the kernel's counts against it. It follows
the C rules exactly, including their edge cases (a cut-short header classes as
<family>/other; at most two VLAN tags; at most XDPCTL_IPV6_EXT_MAX extension
headers walked).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def _v4_class(proto: int) -> str:
    return {6: "ipv4/tcp", 17: "ipv4/udp", 1: "ipv4/icmp"}.get(proto, "ipv4/other")


def _v6_class(proto: int) -> str:
    return {6: "ipv6/tcp", 17: "ipv6/udp", 58: "ipv6/icmpv6"}.get(proto, "ipv6/other")


def parse(frame: bytes) -> Parsed:
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
    return Parsed(_v4_class(proto), True, ETH_P_IP, vlan_id, proto, off + ihl * 4, frag_later)


def _parse_v6(frame: bytes, off: int, vlan_id) -> Parsed:
    other = Parsed("ipv6/other", True, ETH_P_IPV6, vlan_id)
    if len(frame) < off + 40:
        return other
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
        nexthdr = frame[cur]
        cur += step
    if nexthdr in _IPV6_EXT:
        return other
    return Parsed(_v6_class(nexthdr), True, ETH_P_IPV6, vlan_id, nexthdr, cur, frag_later)


def classify(frame: bytes) -> str:
    return parse(frame).cls
