"""The flow hash of redirect --to, as bpf/action_kern.h computes it: which of
a rule's targets a frame leaves by. The reference the program is tested
against (tests/kernel/test_actions_prog_run.py), and what the lab tests use
to say which target each flow must reach.

A 32-bit MurmurHash3 (x86_32, seed 0) over 32-bit words loaded from the
frame in the machine's byte order (x86: little-endian): the source and
destination addresses, then, for TCP and UDP whose every frame carries the
ports (not an IPv4 fragment, no IPv6 extension header), the protocol and
the ports (sport << 16 | dport). Frames without addresses hash as no words.
The target is (hash * targets) >> 32.
"""

from __future__ import annotations

import sys

from .classify import ETH_P_8021AD, ETH_P_8021Q, VLAN_MAX, parse

MASK = 0xFFFFFFFF
_ORDER = sys.byteorder  # the program loads the words as the CPU does


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & MASK


def murmur3_words(words: list[int]) -> int:
    h = 0
    for k in words:
        k = (k * 0xCC9E2D51) & MASK
        k = _rotl(k, 15)
        k = (k * 0x1B873593) & MASK
        h ^= k
        h = _rotl(h, 13)
        h = (h * 5 + 0xE6546B64) & MASK
    h ^= 4 * len(words)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK
    h ^= h >> 16
    return h


def _words(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i : i + 4], _ORDER) for i in range(0, len(raw), 4)]


def _l3_offset(frame: bytes) -> int:
    """Where the IP header starts: after the Ethernet header and the VLAN
    tags the parser looks through."""
    off = 14
    for _ in range(VLAN_MAX):
        if int.from_bytes(frame[off - 2 : off], "big") not in (ETH_P_8021Q, ETH_P_8021AD):
            break
        off += 4
    return off


def flow_words(frame: bytes) -> list[int]:
    """The words the program hashes for a frame."""
    p = parse(frame)
    if p.ipv not in (4, 6):
        return []
    l3_off = _l3_offset(frame)
    l3 = frame[l3_off:]
    if p.ipv == 4:
        words = _words(l3[12:20])
        fragment = int.from_bytes(l3[6:8], "big") & 0x3FFF  # MF or an offset
        whole = not fragment
    else:
        words = _words(l3[8:40])
        whole = p.l4_offset == l3_off + 40  # no extension header
    if p.sport is not None and p.l4proto in (6, 17) and whole:
        words += [p.l4proto, (p.sport << 16) | p.dport]
    return words


def flow_hash(frame: bytes) -> int:
    return murmur3_words(flow_words(frame))


def pick(frame: bytes, targets: int) -> int:
    """The index of the target a frame leaves by, among targets."""
    return 0 if targets <= 1 else (flow_hash(frame) * targets) >> 32
