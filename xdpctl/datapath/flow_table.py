"""The flow table's records as user space reads and writes them: a flow's key
and value (struct xdpctl_flow_key, struct xdpctl_flow), an interface's flow
settings (struct xdpctl_flow_config), and the egress program's record
(struct xdpctl_egress). The C side is bpf/flow_kern.h, which builds the keys,
and bpf/egress_kern.c, which records the flows.

Settings are given as `--flow-timeouts tcp=300,udp=60,icmp=30,closing=10`
(any of them; seconds) and `--flow-table-size N`, checked here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from ..errors import BadInput
from . import contract

NS = 1_000_000_000
TIMEOUT_MAX_S = 0xFFFFFFFF  # ~136 years; its nanoseconds fit the s64 the programs compare in
ENTRIES_MIN = 1024
ENTRIES_MAX = 1 << 24  # ~2.3 GiB of kernel memory (a flow takes ~144 bytes)
PROTOCOLS = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
_DECIMAL = re.compile(r"^[0-9]+$")


# --- settings ------------------------------------------------------------------


@dataclass(frozen=True)
class FlowSettings:
    """Timeouts in seconds (contract.FLOW_TIMEOUTS order) and the table's size."""

    timeouts: tuple[int, ...] = tuple(contract.FLOW_TIMEOUT_DEFAULTS_S[n] for n in contract.FLOW_TIMEOUTS)
    entries: int = contract.FLOW_ENTRIES_DEFAULT

    def pack(self) -> bytes:
        return contract.FLOW_CONFIG.pack(*(t * NS for t in self.timeouts), self.entries, 0)

    @classmethod
    def unpack(cls, raw: bytes) -> "FlowSettings":
        values = contract.FLOW_CONFIG.unpack(raw[: contract.FLOW_CONFIG.size])
        n = len(contract.FLOW_TIMEOUTS)
        return cls(tuple(v // NS for v in values[:n]), values[n])

    def timeout(self, name: str) -> int:
        return self.timeouts[contract.FLOW_TIMEOUTS.index(name)]

    def with_timeouts(self, changes: dict[str, int]) -> "FlowSettings":
        return replace(self, timeouts=tuple(changes.get(n, t) for n, t in zip(contract.FLOW_TIMEOUTS, self.timeouts)))

    def describe_timeouts(self) -> dict[str, int]:
        return dict(zip(contract.FLOW_TIMEOUTS, self.timeouts))


DEFAULT_SETTINGS = FlowSettings()


def _number(text, what: str, lo: int, hi: int) -> int:
    if isinstance(text, bool):
        raise BadInput(f"{what} must be a number from {lo:,} to {hi:,}, not {text!r}")
    s = str(text).strip().replace("_", "")
    if not _DECIMAL.match(s):
        raise BadInput(f"{what} must be a whole number from {lo:,} to {hi:,}; got {text!r}")
    value = int(s)
    if not lo <= value <= hi:
        raise BadInput(f"{what} must be from {lo:,} to {hi:,}; got {value:,}")
    return value


def parse_timeouts(text: str, what: str = "--flow-timeouts") -> dict[str, int]:
    """'tcp=300,udp=60' -> {"tcp": 300, "udp": 60}: seconds, each at least 1."""
    out: dict[str, int] = {}
    items = [t.strip() for t in str(text).split(",")]
    if not any(items):
        raise BadInput(f"{what} needs timeouts like tcp=300,udp=60,icmp=30,closing=10 (seconds)")
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in contract.FLOW_TIMEOUTS:
            raise BadInput(f"{what}: {item!r} is not NAME=SECONDS with NAME one of "
                           f"{', '.join(contract.FLOW_TIMEOUTS)} (like tcp=300)")
        if name in out:
            raise BadInput(f"{what}: {name} is given twice")
        out[name] = _number(value, f"{what} {name}", 1, TIMEOUT_MAX_S)
    return out


def parse_entries(text, what: str = "--flow-table-size") -> int:
    return _number(text, what, ENTRIES_MIN, ENTRIES_MAX)


# --- flows ---------------------------------------------------------------------


def _address(raw: bytes, family: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv4Address(raw[:4]) if family == 4 else ipaddress.IPv6Address(raw)


def pack_key(family: int, proto: int, host: str, host_port: int, remote: str, remote_port: int = 0) -> bytes:
    """struct xdpctl_flow_key (for an ICMP echo, host_port is its identifier)."""
    def raw(addr: str) -> bytes:
        return ipaddress.ip_address(addr).packed.ljust(16, b"\0")

    return contract.FLOW_KEY.pack(family, proto, host_port, remote_port, 0, raw(host), raw(remote))


@dataclass(frozen=True)
class Flow:
    """One entry of the table, as the programs wrote it."""

    family: int
    proto: int
    host: ipaddress.IPv4Address | ipaddress.IPv6Address
    host_port: int  # the echo identifier, for ICMP
    remote: ipaddress.IPv4Address | ipaddress.IPv6Address
    remote_port: int
    first_seen: int  # ns of CLOCK_MONOTONIC(_COARSE)
    last_seen: int
    packets_in: int
    bytes_in: int
    timeout: int  # contract.FLOW_* index

    @classmethod
    def decode(cls, key: bytes, value: bytes) -> "Flow":
        family, proto, lport, rport, _pad, laddr, raddr = contract.FLOW_KEY.unpack(key[: contract.FLOW_KEY.size])
        first, last, packets, nbytes, timeout, _ = contract.FLOW.unpack(value[: contract.FLOW.size])
        return cls(family, proto, _address(laddr, family), lport, _address(raddr, family), rport, first, last,
                   packets, nbytes, timeout)

    @property
    def is_icmp(self) -> bool:
        return self.proto in (1, 58)

    @property
    def state(self) -> str:
        return "closing" if self.timeout == contract.FLOW_CLOSING else "open"

    def timeout_s(self, settings: FlowSettings) -> int:
        return settings.timeouts[self.timeout & (len(contract.FLOW_TIMEOUTS) - 1)]

    def live(self, settings: FlowSettings, now_ns: int) -> bool:
        """As the programs judge it (xdpctl_flow_live)."""
        return now_ns - self.last_seen <= self.timeout_s(settings) * NS

    def describe(self, settings: FlowSettings, now_ns: int) -> dict:
        """The flow as `xdpctl flows --json` shows it."""
        icmp = self.is_icmp
        return {
            "proto": PROTOCOLS.get(self.proto, str(self.proto)),
            "family": f"ipv{self.family}",
            "host": str(self.host),
            "host_port": None if icmp else self.host_port,
            "remote": str(self.remote),
            "remote_port": None if icmp else self.remote_port,
            "icmp_id": self.host_port if icmp else None,
            "state": self.state,
            "age_s": round(max(0, now_ns - self.first_seen) / NS, 3),
            "idle_s": round(max(0, now_ns - self.last_seen) / NS, 3),
            "expires_in_s": round(max(0, self.last_seen + self.timeout_s(settings) * NS - now_ns) / NS, 3),
            "packets_back": self.packets_in,
            "bytes_back": self.bytes_in,
        }


def count_live(values, settings: FlowSettings, now_ns: int) -> int:
    """How many of these struct xdpctl_flow values are live at now_ns, as
    Flow.live judges each, without decoding them (a scrape of a full table,
    262,144 entries: Flow.decode takes seconds, this a fraction of one)."""
    size = contract.FLOW.size
    oldest = [now_ns - t * NS for t in settings.timeouts]  # live: last_seen at or after this
    mask = len(contract.FLOW_TIMEOUTS) - 1
    return sum(1 for _first, last, _p, _b, timeout, _pad in contract.FLOW.iter_unpack(b"".join(v[:size] for v in values))
               if last >= oldest[timeout & mask])


# --- the egress program's record -------------------------------------------------------


@dataclass(frozen=True)
class EgressRecord:
    prog_id: int = 0
    pending_prog_id: int = 0
    prio: int = 0
    handle: int = 0
    flags: int = 0
    attached_at: int = 0

    def pack(self) -> bytes:
        return contract.EGRESS.pack(self.prog_id, self.pending_prog_id, self.prio, self.handle, self.flags, 0,
                                    self.attached_at)

    @classmethod
    def unpack(cls, raw: bytes) -> "EgressRecord":
        prog_id, pending, prio, handle, flags, _pad, attached_at = contract.EGRESS.unpack(raw[: contract.EGRESS.size])
        return cls(prog_id, pending, prio, handle, flags, attached_at)

    @property
    def own_qdisc(self) -> bool:
        return bool(self.flags & contract.EGRESS_OWN_QDISC)
