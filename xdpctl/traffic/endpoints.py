"""Who talks to whom in generated traffic: the sender (src, the lab's peer)
and the interface under test (dst). A plain value, free of scapy, so that the
lab and the CLI can hold one without paying for scapy's import."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoints:
    src_mac: str
    dst_mac: str
    src4: str
    dst4: str
    src6: str
    dst6: str
    sport: int = 40000
    dport: int = 9  # discard
