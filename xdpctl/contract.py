"""Python mirror of bpf/xdpctl_kern_user.h, the C/Python contract.

Every value here is declared in that header first. tests/unit/test_contract.py
parses the header and fails if anything below drifts from it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ABI_VERSION = 1

# Protocol classes, in code order (the index is the class code).
CLASSES: tuple[str, ...] = (
    "ipv4/tcp",
    "ipv4/udp",
    "ipv4/icmp",
    "ipv4/other",
    "ipv6/tcp",
    "ipv6/udp",
    "ipv6/icmpv6",
    "ipv6/other",
    "arp",
    "other",
)
CLASS_CODES: dict[str, int] = {name: code for code, name in enumerate(CLASSES)}

# Verdicts, in code order.
VERDICTS: tuple[str, ...] = ("pass", "drop")

# struct xdpctl_counter: packets, bytes.
COUNTER = struct.Struct("<QQ")
# struct xdpctl_class_counters: the value under each class key, one
# struct xdpctl_counter per verdict, in verdict order.
CLASS_COUNTERS = struct.Struct("<" + "QQ" * len(VERDICTS))

# Attach modes (XDPCTL_MODE_*), by the names the CLI uses.
MODES: dict[str, int] = {"native": 1, "generic": 2, "offload": 3}
MODE_NAMES: dict[int, str] = {code: name for name, code in MODES.items()}

# Option bits (XDPCTL_OPT_*).
OPT_DROP_NON_IP = 1 << 0

# struct xdpctl_meta.
META = struct.Struct("<IIQIIIIQQ16s")
META_FIELDS = (
    "abi_version",
    "ifindex",
    "netns_ino",
    "prog_id",
    "pending_prog_id",
    "mode",
    "options",
    "attached_at",
    "features",
    "ifname",
)

# Pins, relative to an attachment's directory.
PIN_COUNTERS = "counters"
PIN_META = "meta"
PIN_PROG = "prog"

PROG_NAME = "xdpctl_filter"


@dataclass(frozen=True)
class Meta:
    """One attachment, as recorded in its pinned meta map."""

    abi_version: int
    ifindex: int
    netns_ino: int
    prog_id: int
    pending_prog_id: int
    mode: int
    options: int
    attached_at: int
    features: int
    ifname: str

    def pack(self) -> bytes:
        return META.pack(
            self.abi_version,
            self.ifindex,
            self.netns_ino,
            self.prog_id,
            self.pending_prog_id,
            self.mode,
            self.options,
            self.attached_at,
            self.features,
            self.ifname.encode(),
        )

    @classmethod
    def unpack(cls, raw: bytes) -> "Meta":
        values = list(META.unpack(raw[: META.size]))
        values[-1] = values[-1].split(b"\0", 1)[0].decode(errors="replace")
        return cls(*values)

    @property
    def mode_name(self) -> str:
        return MODE_NAMES.get(self.mode, "unknown")

    @property
    def drop_non_ip(self) -> bool:
        return bool(self.options & OPT_DROP_NON_IP)
