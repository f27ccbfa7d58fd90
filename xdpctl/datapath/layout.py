"""The shape of the rule engine's tables in a compiled program.

One Layout gives three views of the same thing, so they cannot disagree:
- the -D flags that size struct xdpctl_tables in bpf/rules_kern.h;
- the offset of every array in that struct, to fill it from user space
  (every array is a multiple of 8 bytes, so the C struct has no padding and
  the offsets are running sums in declaration order);
- struct xdpctl_layout, recorded in meta, so a later process knows them.

Capacities grow in powers of two: a rule that fits the current layout only
writes maps; one that does not gets a new layout, a recompile and an atomic
program replace.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import contract

KIND_NAMES = tuple(name for name, _ in contract.KINDS)
TRIE_NAMES = tuple(name for name, _ in contract.TRIES)
TRIE_BIT = dict(contract.TRIES)
KIND_BIT = dict(contract.KINDS)
# The actions beyond pass and drop: their -D switch (action_kern.h) and
# their name in messages, in XDPCTL_ACTS_* bit order.
ACTION_SWITCHES = (
    (contract.ACTS_REDIRECT, "XDPCTL_REDIRECT_DEV", "redirect-to"),
    (contract.ACTS_CPU, "XDPCTL_REDIRECT_CPU", "redirect-cpu"),
    (contract.ACTS_TX, "XDPCTL_TX", "tx"),
    (contract.FEAT_LIMITS, "XDPCTL_LIMITS", "limits"),  # not an action: rate limits (limit_kern.h)
    (contract.FEAT_BANS, "XDPCTL_BANS", "bans"),  # nor this: the ban list, before any rule
)

# The general search's verifier walk grows with what the program holds
# beside it. With the flow table's lookup (--established) and the flow hash of
# redirect --to in one program, the largest search (contract.MAX_GENERAL
# general rules, four summary words) passes the verifier's million
# instructions on 6.18; two summary words verify (774,295 instructions). So
# such a program holds at most this many general rules (rules/model.py's
# general_limit; tests/kernel/test_variants.py walks it on every kernel).
MAX_GENERAL_ESTABLISHED_REDIRECT = 8192

# Field-indexed arrays (kind, member, entries), in struct order.
VALUE_ARRAYS = (
    ("PROTO", "proto", 256),
    ("SPORT", "sport", 65536),
    ("DPORT", "dport", 65536),
    ("VLAN", "vlan", 4096),
    ("ETHERTYPE", "ethertype", 65536),
    ("TCP_FLAGS", "tcp_flags", 256),
    ("ICMP", "icmp", 65536),
    ("ESTABLISHED", "established", 2),  # indexed by the flow lookup's answer
)
# Tries: name -> (member prefix, key bytes).
TRIES = {"SRC4": ("src4", 4), "SRC6": ("src6", 16), "DST4": ("dst4", 4), "DST6": ("dst6", 16),
         "SMAC": ("smac", 6), "DMAC": ("dmac", 6)}
FULL_DEPTH = {"SRC4": 2, "DST4": 2, "SRC6": 6, "DST6": 6, "SMAC": 4, "DMAC": 4}
L4_KINDS = (contract.KIND_SPORT | contract.KIND_DPORT | contract.KIND_TCP_FLAGS | contract.KIND_ICMP
            | contract.KIND_ESTABLISHED)
# The one kind compiled in exactly when a rule uses it, never kept "for later"
# as the others are: it costs every frame a hash lookup and needs the egress
# program (docs/rules.md), so a program without --established rules has none
# of it.
EXACT_KINDS = contract.KIND_ESTABLISHED

SLOT_TIERS = (1024, 16384, contract.MAX_RULES)
# Room to grow, so that the first rules of each kind do not each recompile.
MIN_CAP = 64
MIN_NODES = 64
MIN_DECISIONS = 64


def tier(n: int, minimum: int = 1) -> int:
    """The smallest power of two >= max(n, minimum)."""
    n = max(n, minimum)
    return 1 << (n - 1).bit_length()


def _roomy(n: int) -> int:
    """n with a quarter more room: growing past a tier compiles a new program,
    but every record costs memory in both generations (at 10,000 rules, the
    tables of a generation are tens of megabytes)."""
    return n + n // 4


def slot_tier(n: int) -> int:
    for t in SLOT_TIERS:
        if n <= t:
            return t
    raise ValueError(n)


@dataclass(frozen=True)
class Section:
    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class Needs:
    """What a rule set needs from a layout (exact counts, untiered)."""

    kinds: int = 0
    tries: int = 0
    general: int = 0
    decisions: int = 0
    slots: int = 0
    caps: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)
    depths: dict[str, int] = field(default_factory=dict)
    actions: int = 0  # contract.ACTS_*: the actions beyond pass and drop the rules use


def depth_for(prefix_len: int) -> int:
    """Trie levels below the 16-bit root that a prefix of this length needs."""
    return max(0, -(-(prefix_len - 16) // 8))


@dataclass(frozen=True)
class Layout:
    tag: int = 0  # 0: no rule engine
    kinds: int = 0
    tries: int = 0
    words: int = 0  # 0: no general rules
    decisions: int = 0
    slots: int = 0
    caps: tuple[int, ...] = (0,) * contract.NKINDS
    nodes: tuple[int, ...] = (0,) * contract.NTRIES
    depths: tuple[int, ...] = (0,) * contract.NTRIES
    actions: int = 0  # contract.ACTS_* compiled in (bpf/action_kern.h)

    # -- views ----------------------------------------------------------------

    @property
    def engine(self) -> bool:
        return self.tag != 0

    def cap(self, kind: str) -> int:
        return self.caps[KIND_NAMES.index(kind)]

    def node_count(self, trie: str) -> int:
        return self.nodes[TRIE_NAMES.index(trie)]

    def depth(self, trie: str) -> int:
        return self.depths[TRIE_NAMES.index(trie)]

    def has_kind(self, kind: str) -> bool:
        return bool(self.kinds & KIND_BIT[kind])

    def has_trie(self, trie: str) -> bool:
        return bool(self.tries & TRIE_BIT[trie])

    @property
    def record_words(self) -> int:
        """u64 per class record: XDPCTL_CW (with limits, a last word of
        the limited rules the class allows)."""
        limits = 1 if self.actions & contract.FEAT_LIMITS else 0
        return 1 + contract.summary_words(self.words) + self.words + limits

    def describe(self) -> str:
        """The layout in words, for messages: "kinds src,dport, 1024 rules"
        (the hits map's slots), and how many of them may be general."""
        kinds = ",".join(name.lower() for name in KIND_NAMES if self.has_kind(name)) or "none"
        general = f", {self.words * 64} general" if self.words else ""
        actions = ",".join(name for bit, _, name in ACTION_SWITCHES if self.actions & bit)
        return f"kinds {kinds}, {self.slots} rules{general}" + (f", actions {actions}" if actions else "")

    def defines(self) -> list[tuple[str, str | None]]:
        """The -D flags of this layout (none without a rule engine)."""
        if not self.engine:
            return []
        out: list[tuple[str, str | None]] = [
            ("XDPCTL_RULES", None),
            ("XDPCTL_LAYOUT_TAG", f'"{self.tag}"'),
            ("XDPCTL_SLOTS", str(self.slots)),
            ("XDPCTL_SLOTS_TAG", f'"{self.slots}"'),
            ("XDPCTL_WORDS", str(self.words)),
            ("XDPCTL_DECISIONS", str(self.decisions)),
            ("XDPCTL_NDIMS", str(bin(self.kinds).count("1"))),
        ]
        if self.words:
            out.append(("XDPCTL_GENERAL", None))
        # The flow hash of redirect --to reads the ports, as port matches do.
        # So do the buckets of --per flow.
        if self.kinds & L4_KINDS or self.actions & (contract.ACTS_REDIRECT | contract.FEAT_LIMITS):
            out.append(("XDPCTL_NEED_L4", None))
        out += [(switch, None) for bit, switch, _ in ACTION_SWITCHES if self.actions & bit]
        for name in KIND_NAMES:
            if self.has_kind(name):
                out += [(f"XDPCTL_USE_{name}", None), (f"XDPCTL_CAP_{name}", str(self.cap(name)))]
        for name in TRIE_NAMES:
            if self.has_trie(name):
                out += [(f"XDPCTL_TRIE_{name}", None), (f"XDPCTL_NODES_{name}", str(self.node_count(name))),
                        (f"XDPCTL_DEPTH_{name}", str(self.depth(name)))]
        return out

    def sections(self) -> list[Section]:
        """The members of struct xdpctl_tables, in order, with offsets."""
        parts: list[tuple[str, int]] = [("ctz", 64)]
        for kind, member, entries in VALUE_ARRAYS:
            if self.has_kind(kind):
                parts.append((member, 4 * entries))
        for name in TRIE_NAMES:
            if self.has_trie(name):
                member = TRIES[name][0]
                parts.append((f"{member}_root", 4 * contract.TRIE_ROOT))
                parts.append((f"{member}_node", 4 * self.node_count(name) * contract.TRIE_BLOCK))
        for name in KIND_NAMES:
            if self.has_kind(name):
                parts.append((f"cls_{name.lower()}", 8 * self.cap(name) * self.record_words))
        if self.actions & contract.FEAT_LIMITS:
            parts.append(("limited", 4 * contract.LIMIT_K))
        parts.append(("decision", contract.DECISION.size * self.decisions))
        out, offset = [], 0
        for name, size in parts:
            assert size % 8 == 0, name
            out.append(Section(name, offset, size))
            offset += size
        return out

    @property
    def tables_size(self) -> int:
        last = self.sections()[-1]
        return last.offset + last.size

    def pin_tables(self) -> str:
        return f"{contract.PIN_TABLES}_{self.tag}"

    def pin_hits(self) -> str:
        return f"{contract.PIN_HITS}_{self.slots}"

    def pin_limits(self) -> str:
        return f"{contract.PIN_LIMITS}_{self.slots}"

    def pin_buckets(self) -> str:
        return f"{contract.PIN_BUCKETS}_{self.slots}"

    def pin_limit_stats(self) -> str:
        return f"{contract.PIN_LIMIT_STATS}_{self.slots}"

    # -- meta -------------------------------------------------------------------

    def pack(self) -> tuple[int, ...]:
        return (self.tag, self.tries, self.words, self.decisions, self.slots, *self.caps, *self.nodes,
                *self.depths, self.actions)

    @classmethod
    def unpack(cls, values: tuple[int, ...]) -> "Layout":
        tag, tries, words, decisions, slots = values[:5]
        k, t = contract.NKINDS, contract.NTRIES
        caps = tuple(values[5 : 5 + k])
        nodes = tuple(values[5 + k : 5 + k + t])
        depths = tuple(values[5 + k + t : 5 + k + 2 * t])
        actions = values[5 + k + 2 * t]
        kinds = sum(bit for (name, bit), cap in zip(contract.KINDS, caps) if cap)
        return cls(tag, kinds, tries, words, decisions, slots, caps, nodes, depths, actions)

    # -- growth -----------------------------------------------------------------

    def fits(self, needs: Needs) -> bool:
        if (self.kinds ^ needs.kinds) & EXACT_KINDS:
            return False
        if needs.actions & ~self.actions:
            return False  # a feature the program lacks (the ban list, with no rule: `ban add`)
        if not needs.kinds and not needs.decisions:
            return True  # no rules: any layout serves
        if not self.engine:
            return False
        if needs.kinds & ~self.kinds or needs.tries & ~self.tries:
            return False
        if needs.general and self.words * 64 < needs.general:
            return False
        if needs.decisions > self.decisions or needs.slots > self.slots:
            return False
        if any(n > self.cap(k) for k, n in needs.caps.items()):
            return False
        if any(n > self.node_count(t) for t, n in needs.nodes.items()):
            return False
        return all(n <= self.depth(t) for t, n in needs.depths.items())

    def grown(self, needs: Needs) -> "Layout":
        """A layout for needs, at least as large as this one, with a new tag."""
        kinds = (self.kinds & ~EXACT_KINDS) | needs.kinds
        tries = self.tries | needs.tries
        caps = tuple(
            max(self.caps[i], tier(_roomy(needs.caps.get(name, 1)), MIN_CAP)) if kinds & KIND_BIT[name] else 0
            for i, name in enumerate(KIND_NAMES)
        )
        nodes = tuple(
            max(self.nodes[i], tier(_roomy(needs.nodes.get(name, 1)), MIN_NODES)) if tries & TRIE_BIT[name] else 0
            for i, name in enumerate(TRIE_NAMES)
        )
        # Tries get room to grow in depth: IPv4 and MACs their full depth at
        # once (a /32 or a MAC then needs no recompile), IPv6 down to /64.
        depths = tuple(
            max(self.depths[i], needs.depths.get(name, 0), FULL_DEPTH[name]) if tries & TRIE_BIT[name] else 0
            for i, name in enumerate(TRIE_NAMES)
        )
        words = max(self.words, tier(-(-needs.general // 64))) if needs.general or self.words else 0
        return replace(
            self,
            tag=self.tag + 1,
            kinds=kinds,
            tries=tries,
            words=words,
            decisions=max(self.decisions, tier(needs.decisions, MIN_DECISIONS)),
            slots=max(self.slots, slot_tier(max(needs.slots, 1))),
            caps=caps,
            nodes=nodes,
            depths=depths,
            actions=self.actions | needs.actions,
        )
