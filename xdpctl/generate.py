"""gen: build a profile's frames once (scapy), send them in bulk from a lab's
peer (or any interface in any namespace), and report what went out per
protocol class, in the names and shape `stats` uses.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Callable

from . import classify, contract
from .endpoints import Endpoints
from .errors import BadInput

MAX_DURATION_S = 3600.0
MAX_COUNT = 100_000_000


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


def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise BadInput(f"{text!r} is not an IPv4 or IPv6 address or CIDR (e.g. 203.0.113.0/24)") from None


def validate(req: GenRequest) -> None:
    if req.count is not None and not 0 < req.count <= MAX_COUNT:
        raise BadInput(f"--count must be between 1 and {MAX_COUNT:,}; got {req.count}")
    if req.duration is not None and not 0 < req.duration <= MAX_DURATION_S:
        raise BadInput(f"--duration must be more than 0 and at most {MAX_DURATION_S:.0f} seconds")
    if req.rate is not None and req.rate <= 0:
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
        if not os.path.exists(req.pcap):
            raise BadInput(f"no capture file {req.pcap!r}")
        if os.path.isdir(req.pcap):
            raise BadInput(f"{req.pcap!r} is a directory, not a capture file")


def build_frames(req: GenRequest, ep: Endpoints) -> list[bytes]:
    from . import frames  # scapy: only when frames are really built

    if req.pcap:
        try:
            out = frames.read_pcap(req.pcap)
        except Exception as exc:  # noqa: BLE001 - scapy raises many kinds
            raise BadInput(f"cannot read {req.pcap!r} as a pcap or pcapng capture: {exc}") from None
        if not out:
            raise BadInput(f"{req.pcap!r} holds no frames")
        return out
    return frames.build(req.profile, ep, vlans=req.vlans, src_cidr=req.src_cidr, size=req.size, seed=req.seed)


def tally(frames_: list[bytes], per_frame: list[int]) -> dict:
    """Frames sent per class, as {class: {"sent": {"packets", "bytes"}}}."""
    out = {cls: {"sent": {"packets": 0, "bytes": 0}} for cls in contract.CLASSES}
    for frame, n in zip(frames_, per_frame):
        c = out[classify.classify(frame)]["sent"]
        c["packets"] += n
        c["bytes"] += n * len(frame)
    return out


def generate(target: Target, req: GenRequest, progress: Callable[[int], None] | None = None) -> dict:
    from .sender import Sender

    validate(req)
    built = build_frames(req, target.endpoints)
    try:
        sender = Sender(target.iface, target.netns)
    except OSError as exc:
        raise BadInput(f"cannot send on {target.iface}: {exc.strerror or exc}") from None
    with sender:
        result = sender.send(built, req.count, rate=req.rate, duration=req.duration, progress=progress)
    return {
        "interfaces": [{"ifname": target.label, "counters": tally(built, result.per_frame)}],
        "frames": result.sent,
        "distinct_frames": len(built),
        "seconds": round(result.seconds, 6),
        "fps": round(result.fps, 1),
    }
