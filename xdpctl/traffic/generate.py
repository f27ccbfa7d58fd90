"""gen: build a profile's frames once (scapy), send them in bulk from a lab's
peer (or any interface in any namespace), and report what went out per
protocol class, in the names and shape `stats` uses.
"""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass
from typing import Callable

from ..datapath import classify, contract
from .endpoints import Endpoints
from ..errors import BadInput, KernelError

MAX_DURATION_S = 3600.0
MAX_COUNT = 100_000_000
FLOODS = ("syn-flood", "udp-flood", "icmp-flood")  # the profiles --src spreads
ETH_HLEN, VLAN_HLEN = 14, 4
VLAN_TPID_8021Q = b"\x81\x00"  # AF_PACKET allows the 4 extra bytes for 802.1Q only


@dataclass(frozen=True)
class Target:
    """Where frames leave from (iface in netns) and whom they address."""

    iface: str
    netns: str | None
    endpoints: Endpoints
    label: str  # the interface the frames arrive at, for the report


@dataclass
class GenRequest:
    profile: str = "mix"
    count: int | None = None
    duration: float | None = None
    rate: float | None = None
    src_cidr: str | None = None
    vlans: tuple[int, ...] = ()
    size: int | None = None
    pcap: str | None = None
    seed: int = 0


def parse_cidr(text: str, option: str = "--src") -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or a network; a network given with host bits set is refused
    (203.0.113.5/24 is most likely a typo, and spreading over it would not
    be what was asked)."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            net = ipaddress.ip_network(text, strict=False)
            raise BadInput(f"{option} {text} has host bits set; the network is {net}") from None
        raise BadInput(f"{option} {text!r} is not an IPv4 or IPv6 address or CIDR (e.g. 203.0.113.0/24)") from None


def validate(req: GenRequest) -> None:
    if req.count is not None and not 0 < req.count <= MAX_COUNT:
        raise BadInput(f"--count must be between 1 and {MAX_COUNT:,}; got {req.count}")
    if req.duration is not None and not 0 < req.duration <= MAX_DURATION_S:
        raise BadInput(f"--duration must be more than 0 and at most {MAX_DURATION_S:.0f} seconds")
    if req.rate is not None and not (math.isfinite(req.rate) and req.rate > 0):
        raise BadInput("--rate must be a positive number of frames per second")
    if req.count is None and req.duration is None:
        req.count = 1000
    if len(req.vlans) > 2:
        raise BadInput("at most two --vlan tags (outer first), as 802.1ad QinQ")
    for v in req.vlans:
        if not 0 <= v <= 4095:
            raise BadInput(f"VLAN id {v} is out of range 0-4095")
    if req.size is not None and not 14 <= req.size <= 9000:
        raise BadInput("--size must be between 14 and 9000 bytes")
    if req.src_cidr:
        parse_cidr(req.src_cidr)
    if req.pcap:
        # Options that shape built frames would be silently ignored otherwise.
        given = [opt for opt, v in (("--src", req.src_cidr), ("--vlan", req.vlans), ("--size", req.size)) if v]
        if given:
            raise BadInput(f"--pcap replays the frames as captured; drop {'/'.join(given)}")
        if not os.path.exists(req.pcap):
            raise BadInput(f"no capture file {req.pcap!r}")
        if os.path.isdir(req.pcap):
            raise BadInput(f"{req.pcap!r} is a directory, not a capture file")
    elif req.src_cidr and req.profile not in FLOODS:
        raise BadInput(f"--src spreads the sources of the flood profiles ({', '.join(FLOODS)}), "
                       f"not of {req.profile}")


def build_frames(req: GenRequest, ep: Endpoints) -> list[bytes]:
    from . import frames  # scapy: only when frames are really built

    if req.pcap:
        from ..safe_files import open_file

        try:
            with open_file(req.pcap) as capture:  # opened once, never through a link
                out = frames.read_pcap(capture)
        except BadInput:
            raise
        except Exception as exc:  # noqa: BLE001 - scapy raises many kinds
            raise BadInput(f"cannot read {req.pcap!r} as a pcap or pcapng capture: {exc}") from None
        if not out:
            raise BadInput(f"{req.pcap!r} holds no frames")
        return out
    count = req.count
    if count is None and req.rate and req.duration:  # paced for a time: about this many
        count = math.ceil(req.rate * req.duration)
    return frames.build(req.profile, ep, vlans=req.vlans, src_cidr=req.src_cidr, size=req.size, seed=req.seed,
                        count=count)


def tally(frames_: list[bytes], per_frame: list[int]) -> dict:
    """Frames sent per class, as {class: {"sent": {"packets", "bytes"}}}."""
    out = {cls: {"sent": {"packets": 0, "bytes": 0}} for cls in contract.CLASSES}
    template = getattr(frames_, "template", None)  # a Spread: all of the template's class
    one = classify.classify(template) if template is not None else None
    for frame, n in zip(frames_, per_frame):
        c = out[one or classify.classify(frame)]["sent"]
        c["packets"] += n
        c["bytes"] += n * len(frame)
    return out


def total(per_class: dict) -> dict:
    """The sum over classes, as `stats` gives its "total": {"sent": {...}}."""
    return {"sent": {k: sum(c["sent"][k] for c in per_class.values()) for k in ("packets", "bytes")}}


def check_fits(built: list[bytes], iface: str, mtu: int, sized: bool) -> None:
    """Refuse, before anything is sent, a frame the kernel would refuse
    (EMSGSIZE) part-way through a send: longer than the MTU plus the
    Ethernet header (and one 802.1Q tag), as AF_PACKET allows."""
    for frame in built:
        limit = mtu + ETH_HLEN + (VLAN_HLEN if frame[12:14] == VLAN_TPID_8021Q else 0)
        if len(frame) > limit:
            fix = "use a smaller --size" if sized else "raise its MTU or leave the frame out of the capture"
            raise BadInput(f"a {len(frame)}-byte frame does not fit {iface} (MTU {mtu} plus the Ethernet "
                           f"header); {fix}")


def generate(target: Target, req: GenRequest, progress: Callable[[int], None] | None = None) -> dict:
    from ..kernel.netlink import Netlink
    from .sender import Sender

    validate(req)
    built = build_frames(req, target.endpoints)
    with Netlink(namespace=target.netns) as nl:
        check_fits(built, target.iface, nl.link(target.iface).mtu, req.size is not None)
    try:
        sender = Sender(target.iface, target.netns)
    except OSError as exc:
        raise BadInput(f"cannot send on {target.iface}: {exc.strerror or exc}") from None
    with sender:
        try:
            result = sender.send(built, req.count, rate=req.rate, duration=req.duration, progress=progress)
        except OSError as exc:
            raise KernelError(f"sending on {target.iface} failed: {exc.strerror or exc}") from None
    per_class = tally(built, result.per_frame)
    return {
        "interfaces": [{"ifname": target.label, "counters": per_class, "total": total(per_class)}],
        "frames": result.sent,
        "distinct_frames": len(built),
        "seconds": round(result.seconds, 6),
        "fps": round(result.fps, 1),
    }
