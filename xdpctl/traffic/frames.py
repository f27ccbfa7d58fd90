"""The only module that builds frames with scapy: traffic profiles, and pcap
replay. Frames are built once, as bytes; sending them is xdpctl/traffic/sender.py's
job, without scapy, so floods are not held back by scapy's per-packet cost.
"""

from __future__ import annotations

import ipaddress
import logging
import random

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)


def _scapy_without_interfaces() -> None:
    """xdpctl builds frames with scapy and never sends through it (sender.py
    does, on a socket of its own), so scapy needs none of this machine's
    interfaces and routes. It reads them all when it is imported, though, and
    stops with a UnicodeDecodeError at an interface name that is not UTF-8
    (the kernel allows any byte but '/', ':' and spaces): one such interface
    anywhere in the namespace made every gen and selftest an internal error.
    So scapy is given none, before it loads; the frames are the same bytes."""
    import scapy.interfaces

    scapy.interfaces.InterfaceProvider.reload = lambda self: {}  # read at import: scapy.arch
    try:
        from scapy.arch.linux import rtnetlink
    except ImportError:  # another scapy reads them otherwise
        return
    rtnetlink._get_if_list = lambda: {}  # read for the routes: scapy.route


_scapy_without_interfaces()

from scapy.contrib.lldp import (  # noqa: E402 - after silencing scapy's import chatter and its interfaces
    LLDPDUChassisID,
    LLDPDUEndOfLLDPDU,
    LLDPDUPortID,
    LLDPDUTimeToLive,
)
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_Router_Alert  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, LLC, STP, Dot1AD, Dot1Q, Dot3, Ether  # noqa: E402
from scapy.packet import Padding, Raw  # noqa: E402
from scapy.utils import PcapReader, wrpcap  # noqa: E402

from . import spread  # noqa: E402
from .endpoints import Endpoints  # noqa: E402

PROFILES = ("mix", "ip", "non-ip", "syn-flood", "udp-flood", "icmp-flood")
LLDP_MAC = "01:80:c2:00:00:0e"
STP_MAC = "01:80:c2:00:00:00"
SCAPY_SOURCES = 1024  # up to this many sources, scapy builds each frame; past it, spread.py writes them in
MAX_DISTINCT_SOURCES = 1 << 20  # a flood cycles through at most this many sources
MAX_SPREAD_BYTES = 256 << 20  # and at most this much memory of frames (--size makes them longer)


def _eth(ep: Endpoints, vlans: tuple[int, ...] = ()):
    """Ethernet with zero, one (802.1Q) or two (802.1ad outer, 802.1Q inner) tags."""
    frame = Ether(src=ep.src_mac, dst=ep.dst_mac)
    if len(vlans) == 2:
        frame = frame / Dot1AD(vlan=vlans[0]) / Dot1Q(vlan=vlans[1])
    elif len(vlans) == 1:
        frame = frame / Dot1Q(vlan=vlans[0])
    return frame


def _payload(n: int = 18) -> Raw:
    return Raw(b"xdpctl" + bytes(range(n - 6)))


def _mix(ep: Endpoints, vlans: tuple[int, ...]) -> list:
    e = lambda: _eth(ep, vlans)  # noqa: E731 - a fresh Ether each time
    ip4 = lambda **kw: IP(src=ep.src4, dst=ep.dst4, **kw)  # noqa: E731
    ip6 = lambda **kw: IPv6(src=ep.src6, dst=ep.dst6, **kw)  # noqa: E731
    udp = UDP(sport=ep.sport, dport=ep.dport)
    tcp = TCP(sport=ep.sport, dport=80, flags="S")
    return [
        e() / ip4() / tcp,
        e() / ip4() / udp / _payload(),
        e() / ip4() / ICMP(type=8) / _payload(),
        e() / ip4(proto=47) / Raw(b"\x00\x00\x08\x00" + bytes(20)),  # GRE
        e() / ip4(options=[IPOption_Router_Alert(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP()])
        / udp / _payload(),
        e() / ip4(flags="MF", frag=0, id=7) / UDP(sport=ep.sport, dport=ep.dport, len=64) / _payload(24),
        e() / ip4(frag=4, id=7, proto=17) / Raw(bytes(32)),  # a later fragment: no UDP header
        e() / ip6() / TCP(sport=ep.sport, dport=443, flags="S"),
        e() / ip6() / udp / _payload(),
        e() / ip6() / ICMPv6EchoRequest() / _payload(),
        e() / ip6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / udp / _payload(),
        e() / ip6() / IPv6ExtHdrRouting(addresses=[ep.dst6]) / TCP(sport=ep.sport, dport=22, flags="S"),
        e() / ip6() / IPv6ExtHdrFragment(m=1, id=9) / udp / _payload(),
        e() / ip6(nh=59),  # no next header
        _eth(ep, vlans or (100,)) / ip4() / udp / _payload(),
        _eth(ep, (200, 100)) / ip6() / TCP(sport=ep.sport, dport=80, flags="S"),
        _eth(ep, vlans or (100,)) / ip6() / ICMPv6EchoRequest(),
        Ether(src=ep.src_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=ep.src_mac, psrc=ep.src4, pdst=ep.dst4),
        Ether(src=ep.src_mac, dst=LLDP_MAC, type=0x88CC)
        / LLDPDUChassisID(subtype=4, id=ep.src_mac)
        / LLDPDUPortID(subtype=5, id=b"peer0")
        / LLDPDUTimeToLive(ttl=120)
        / LLDPDUEndOfLLDPDU(),
        Dot3(src=ep.src_mac, dst=STP_MAC) / LLC() / STP(),
        e() / ip4(proto=132) / Raw(bytes(16)),  # SCTP: ipv4/other
    ]


def _flood_frames(profile: str, ep: Endpoints, vlans: tuple[int, ...], src_cidr: str | None, size: int | None,
                  count: int | None, rng: random.Random) -> list[bytes]:
    """A flood's frames, one per source address of --src (as many as will be
    sent, up to MAX_DISTINCT_SOURCES and MAX_SPREAD_BYTES)."""
    if not src_cidr:
        return [_pad(_flood(profile, ep, vlans, None), size)]
    net = ipaddress.ip_network(src_cidr, strict=False)
    first = _pad(_flood(profile, ep, vlans, str(net.network_address)), size)
    most = min(MAX_DISTINCT_SOURCES, MAX_SPREAD_BYTES // len(first), count or MAX_DISTINCT_SOURCES)
    addrs = spread.sources(net, most, rng)
    if len(addrs) <= SCAPY_SOURCES:
        return [_pad(_flood(profile, ep, vlans, str(ipaddress.ip_address(a))), size) for a in addrs]
    return spread.spread(first, addrs)


def _flood(kind: str, ep: Endpoints, vlans: tuple[int, ...], src: str | None) -> object:
    if src and ":" in src:
        l3 = IPv6(src=src, dst=ep.dst6)
    else:
        l3 = IP(src=src or ep.src4, dst=ep.dst4)
    if kind == "syn-flood":
        l4 = TCP(sport=ep.sport, dport=ep.dport, flags="S", seq=1)
    elif kind == "udp-flood":
        l4 = UDP(sport=ep.sport, dport=ep.dport) / _payload()
    elif isinstance(l3, IPv6):
        l4 = ICMPv6EchoRequest() / _payload()
    else:
        l4 = ICMP(type=8) / _payload()
    return _eth(ep, vlans) / l3 / l4


def _pad(pkt, size: int | None) -> bytes:
    raw = bytes(pkt)
    if size and len(raw) < size:
        raw = bytes(pkt / Padding(bytes(size - len(raw))))
    return raw


def build(
    profile: str,
    ep: Endpoints,
    *,
    vlans: tuple[int, ...] = (),
    src_cidr: str | None = None,
    size: int | None = None,
    seed: int = 0,
    count: int | None = None,
) -> list[bytes]:
    """The distinct frames of a profile, as bytes. Sending cycles through them;
    count (the frames to be sent, if known) bounds a flood's sources."""
    rng = random.Random(seed)
    if profile == "mix":
        pkts = _mix(ep, vlans)
    elif profile == "ip":
        pkts = [p for p in _mix(ep, vlans) if p.haslayer(IP) or p.haslayer(IPv6)]
    elif profile == "non-ip":
        pkts = [p for p in _mix(ep, vlans) if not (p.haslayer(IP) or p.haslayer(IPv6))]
    elif profile in ("syn-flood", "udp-flood", "icmp-flood"):
        return _flood_frames(profile, ep, vlans, src_cidr, size, count, rng)
    else:
        raise ValueError(profile)
    return [_pad(p, size) for p in pkts]


def read_pcap(capture) -> list[bytes]:
    """Every frame of a pcap or pcapng capture (a path, or a file opened
    for reading), as bytes."""
    with PcapReader(capture) as reader:
        return [bytes(p) for p in reader]


def write_pcap(path: str, frames: list[bytes]) -> None:
    wrpcap(path, [Ether(f) for f in frames])


def udp_frame(ep: Endpoints, payload: bytes) -> bytes:
    """One IPv4/UDP frame to ep.dst4:ep.dport carrying payload."""
    return bytes(_eth(ep) / IP(src=ep.src4, dst=ep.dst4) / UDP(sport=ep.sport, dport=ep.dport) / Raw(payload))


def describe(frame: bytes) -> str:
    return Ether(frame).summary()
