"""Python mirror of bpf/xdpctl_kern_user.h, the C/Python contract.

Every value here is declared in that header first. tests/unit/test_contract.py
parses the header and fails if anything below drifts from it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ABI_VERSION = 5

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

# Verdicts, in code order (XDPCTL_VERDICT_*): every frame is counted under
# exactly one. Codes are appended, never renumbered: pass and drop keep 0 and 1.
VERDICTS: tuple[str, ...] = ("pass", "drop", "redirect", "tx", "aborted")

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
OPT_POLICY_DENY = 1 << 1

# struct xdpctl_layout (inside struct xdpctl_meta).
NKINDS = 12
NTRIES = 6
LAYOUT = struct.Struct("<IIIII" + "I" * NKINDS + "I" * NTRIES + "I" * NTRIES + "I")  # ... depths, actions
TRIES: tuple[tuple[str, int], ...] = (
    ("SRC4", 1 << 0), ("SRC6", 1 << 1), ("DST4", 1 << 2), ("DST6", 1 << 3), ("SMAC", 1 << 4), ("DMAC", 1 << 5),
)

# struct xdpctl_meta.
META = struct.Struct("<IIQIIIIQQ16s" + LAYOUT.format[1:])
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
    "layout",
)

# --- the rule engine ---------------------------------------------------------

ACTION_PASS = 0
ACTION_DROP = 1
ACTION_REDIRECT = 2  # redirect --to: out of an interface (the devmap)
ACTION_TX = 3  # back out of the interface it came in on, MACs swapped
ACTION_REDIRECT_CPU = 4  # redirect --cpu: on to the stack on a CPU (the cpumap)

# XDPCTL_ACTS_*: the actions beyond pass and drop compiled into a program.
ACTS_REDIRECT = 1 << 0
ACTS_CPU = 1 << 1
ACTS_TX = 1 << 2
ACTS: tuple[tuple[str, int], ...] = (("REDIRECT", ACTS_REDIRECT), ("CPU", ACTS_CPU), ("TX", ACTS_TX))
# In struct xdpctl_layout.actions beside them: rate limits compiled in.
FEAT_LIMITS = 1 << 16

MAX_TARGETS = 64
DEVMAP_GEN = 4096
DEVMAP_ENTRIES = 8192
QUEUE_DEFAULT = 2048
QUEUE_MAX = 16384

# XDPCTL_KIND_*, in bit order (the order of the class records in the tables).
KIND_SRC = 1 << 0
KIND_DST = 1 << 1
KIND_PROTO = 1 << 2
KIND_SPORT = 1 << 3
KIND_DPORT = 1 << 4
KIND_SRC_MAC = 1 << 5
KIND_DST_MAC = 1 << 6
KIND_VLAN = 1 << 7
KIND_ETHERTYPE = 1 << 8
KIND_TCP_FLAGS = 1 << 9
KIND_ICMP = 1 << 10
KIND_ESTABLISHED = 1 << 11
KINDS: tuple[tuple[str, int], ...] = (
    ("SRC", KIND_SRC), ("DST", KIND_DST), ("PROTO", KIND_PROTO), ("SPORT", KIND_SPORT),
    ("DPORT", KIND_DPORT), ("SRC_MAC", KIND_SRC_MAC), ("DST_MAC", KIND_DST_MAC), ("VLAN", KIND_VLAN),
    ("ETHERTYPE", KIND_ETHERTYPE), ("TCP_FLAGS", KIND_TCP_FLAGS), ("ICMP", KIND_ICMP),
    ("ESTABLISHED", KIND_ESTABLISHED),
)

RULE_PRIORITY_SET = 1 << 0
RULE_ICMP_CODE = 1 << 1
RULE_SRC_V6 = 1 << 2
RULE_DST_V6 = 1 << 3

PRIORITY_DEFAULT = 1000

# struct xdpctl_rule, struct xdpctl_rule_key, struct xdpctl_config, struct xdpctl_decision.
RULE = struct.Struct("<IIIIHBBBBBBBBBBHHHHHH16s16s8s8sHBBI"  # ... dst_mac, cpu, ntargets, pad, queue
                     "QQQIIHHBBBBB7s")  # over, burst, ceiling, table, block, periods, units, per, v4, v6
RULE_KEY = struct.Struct("<II")
CONFIG = struct.Struct("<IIIIII")
DECISION = struct.Struct("<QIBBH")  # order, slot, action, targets, target
# struct xdpctl_targets (the targets map, key struct xdpctl_rule_key).
TARGETS = struct.Struct("<" + "I" * MAX_TARGETS + "16s" * MAX_TARGETS)

NO_RULE = 0xFFFFFFFF


def summary_words(words: int) -> int:
    """XDPCTL_SUMMARY_WORDS(w)."""
    return (words + 63) // 64


def class_bytes(words: int) -> int:
    """XDPCTL_CLASS_BYTES(w): plain (u32) + pad, summary words, bitmap words."""
    return 8 + 8 * (summary_words(words) + words)


TRIE_CHILD = 0x80000000
TRIE_ROOT = 65536
TRIE_BLOCK = 256

MAX_RULES = 131072
MAX_GENERAL = 16384

# Pins, relative to an attachment's directory.
PIN_COUNTERS = "counters"
PIN_META = "meta"
PIN_PROG = "prog"
PIN_CONFIG = "config"
PIN_RULES = "rules"
PIN_TABLES = "tables"  # + "_" + layout tag
PIN_HITS = "hits"  # + "_" + slots tag
PIN_DEVMAP = "devmap"
PIN_CPUMAP = "cpumap"
PIN_TARGETS = "targets"

PROG_NAME = "xdpctl_filter"

# --- the flow table (--established) ----------------------------------------------

# struct xdpctl_flow_key: family, proto, lport, rport, _pad0, laddr, raddr.
FLOW_KEY = struct.Struct("<BBHHH16s16s")
# struct xdpctl_flow: first_seen, last_seen, packets_in, bytes_in, timeout, _pad0.
FLOW = struct.Struct("<QQQQII")

# Timeouts (XDPCTL_FLOW_*), in index order: the index is the code.
FLOW_TIMEOUTS: tuple[str, ...] = ("tcp", "udp", "icmp", "closing")
FLOW_TCP, FLOW_UDP, FLOW_ICMP, FLOW_CLOSING = range(4)
# struct xdpctl_flow_config: timeout_ns[XDPCTL_FLOW_TIMEOUTS], entries, _pad0.
FLOW_CONFIG = struct.Struct("<" + "Q" * len(FLOW_TIMEOUTS) + "II")

FLOW_ENTRIES_DEFAULT = 262144
FLOW_TIMEOUT_DEFAULTS_S: dict[str, int] = {"tcp": 300, "udp": 60, "icmp": 30, "closing": 10}

EGRESS_OWN_QDISC = 1 << 0
# struct xdpctl_egress: prog_id, pending_prog_id, prio, handle, flags, _pad0, attached_at.
EGRESS = struct.Struct("<IIIIIIQ")

PIN_FLOWS = "flows"
PIN_FLOW_CONFIG = "flow_cfg"
PIN_EGRESS = "egress"
PIN_EGRESS_PROG = "egress_prog"

EGRESS_PROG_NAME = "xdpctl_egress"

# --- xdpctl trace (trace_kern.h; only while a trace runs) -----------------------

# Who decided a frame (XDPCTL_TRACE_BY_*), in code order: the index is the code.
TRACE_BY: tuple[str, ...] = ("policy", "rule", "drop-non-ip", "ban")
TRACE_BY_POLICY, TRACE_BY_RULE, TRACE_BY_NON_IP, TRACE_BY_BAN = range(4)
TRACE_ANY_SLOT = 0xFFFFFFFF
TRACE_CAP_MAX = 4096
TRACE_RING_BYTES = 8388608
# struct xdpctl_trace_config: verdicts, classes, deciders, slot, sample, snaplen, pid, prog_id, pid_start.
TRACE_CONFIG = struct.Struct("<IIIIIIIIQ")
# struct xdpctl_trace_stats (per CPU): matched, sampled, lost, skip.
TRACE_STATS = struct.Struct("<QQQQ")
# struct xdpctl_trace_record: ktime_ns, len, caplen, ifindex, slot, verdict, class, by, _pad0, _pad1.
TRACE_RECORD = struct.Struct("<QIIIIBBBBI")

PIN_TRACE_CONFIG = "trace_cfg"
PIN_TRACE_STATS = "trace_stats"
PIN_TRACE_RING = "trace_ring"
PIN_TRACE_PROG = "trace_prog"


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
    layout: tuple[int, ...] = (0,) * (LAYOUT.size // 4)  # struct xdpctl_layout, as packed by layout.py

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
            *self.layout,
        )

    @classmethod
    def unpack(cls, raw: bytes) -> "Meta":
        values = list(META.unpack(raw[: META.size]))
        head, layout = values[:10], tuple(values[10:])
        head[9] = head[9].split(b"\0", 1)[0].decode(errors="replace")
        return cls(*head, layout=layout)

    @property
    def mode_name(self) -> str:
        return MODE_NAMES.get(self.mode, "unknown")

    @property
    def drop_non_ip(self) -> bool:
        return bool(self.options & OPT_DROP_NON_IP)

    @property
    def policy_deny(self) -> bool:
        return bool(self.options & OPT_POLICY_DENY)

# --- rate limits (--over) -----------------------------------------------------------

UNIT_NONE, UNIT_FRAMES, UNIT_BYTES, UNIT_BITS = 0, 1, 2, 3
PER_SRC, PER_FLOW, PER_RULE = 0, 1, 2
LIMIT_K = 4
LIMIT_ON = 1 << 0
LIMIT_OF_BYTES = 1 << 1
LIMIT_CEILING = 1 << 2
LIMIT_FAMILY_CEILING = 255
# struct xdpctl_limit: refill, cost, capacity, fill_ns, flags, per, per_v4, per_v6, _pad0,
# and the ceiling's c_refill, c_cost, c_capacity, c_fill_ns.
LIMIT = struct.Struct("<QQQQIBBBBQQQQQ")  # ..., block_ns
# struct xdpctl_limit_stats: within, within_bytes, new_keys, ceiling_over (per CPU).
LIMIT_STATS = struct.Struct("<QQQQ")
PIN_LIMIT_STATS = "lstats"  # + "_" + slots tag
# struct xdpctl_limit_key: slot, family, proto, sport, dport, _pad0, _pad1, src, dst.
LIMIT_KEY = struct.Struct("<IBBHHHI16s16s")
# struct xdpctl_bucket: tokens, last_ns.
BUCKET = struct.Struct("<QQ")
PIN_LIMITS = "limits"  # + "_" + slots tag
# The buckets map: an array of maps by slot, each limited rule's own table
# (an LRU hash of LIMIT_KEY -> BUCKET).
PIN_BUCKETS = "lbuckets"  # + "_" + slots tag

# --- bans (--block, xdpctl ban) --------------------------------------------------------

FEAT_BANS = 1 << 17
BAN_ENTRIES = 65536
# struct xdpctl_ban_key: family, addr.
BAN_KEY = struct.Struct("<I16s")
# struct xdpctl_ban: expires_ns, added_ns, packets, bytes, slot, _pad0.
BAN = struct.Struct("<QQQQII")
PIN_BANS = "bans"
