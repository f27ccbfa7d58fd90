"""Building struct xdpctl_tables for a rule set.

Rules get positions in decision order (priority, then seq). A "general"
rule (anything but a lone prefix) is a bit in the class bitmaps; a "plain"
rule (only --src or only --dst: block-list entries) is kept out of them and
instead named, per prefix class, as the best plain rule covering it.

For every kind of match in use, the values of the field fall into
equivalence classes: values that the same rules allow. Class 0 is always the
"wildcard" class, the general rules that do not use the kind; a frame that
lacks the field (no ports on ICMP, no addresses on ARP) takes it. Classes of
field-indexed kinds come from a sweep over the value boundaries; classes of
prefixes from the prefixes' nesting; MACs are 48-bit prefixes of length 48.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from ..datapath import contract
from ..datapath.layout import KIND_BIT, TRIES, VALUE_ARRAYS, Layout, Needs, depth_for
from . import actions
from .model import Rule, sort_rules

_VALUE_ENTRIES = {kind: entries for kind, _, entries in VALUE_ARRAYS}

DEBRUIJN = 0x03F79D71B4CB0A89  # XDPCTL_DEBRUIJN


def ctz_table() -> bytes:
    """The de Bruijn table of xdpctl_ctz64: position of the lowest set bit."""
    table = bytearray(64)
    for i in range(64):
        table[(((1 << i) * DEBRUIJN) & 0xFFFFFFFFFFFFFFFF) >> 58] = i
    return bytes(table)


def primary_kind(rule: Rule) -> str | None:
    """The rule's most selective kind of match: a frame that fails it cannot
    match the rule, and few frames pass it. None for a rule with no match."""
    m = rule.match
    best: tuple[int, str] | None = None

    def offer(score: int, kind: str) -> None:
        nonlocal best
        if best is None or score < best[0]:
            best = (score, kind)

    for kind, net in (("SRC", m.src), ("DST", m.dst)):
        if net is not None:
            fraction = net.prefixlen / net.max_prefixlen
            offer(0 if fraction >= 0.5 else 3 if fraction >= 0.25 else 9, kind)
    for kind, mac in (("SRC_MAC", m.src_mac), ("DST_MAC", m.dst_mac)):
        if mac is not None:
            offer(1, kind)
    if m.icmp_type is not None:
        offer(2, "ICMP")
    for kind, rng in (("DPORT", m.dport), ("SPORT", m.sport)):
        if rng is not None:
            width = rng[1] - rng[0] + 1
            offer(2 if width <= 16 else 4 if width <= 1024 else 8, kind)
    if m.vlan is not None:
        offer(4, "VLAN")
    if m.ethertype is not None:
        offer(5, "ETHERTYPE")
    if m.proto is not None:
        offer(6, "PROTO")
    if m.tcp_flags is not None:
        offer(7, "TCP_FLAGS")
    if m.established is not None:
        offer(8, "ESTABLISHED")  # most frames of a busy host are replies
    return best[1] if best else None


def bitmap(positions) -> int:
    """An int with the given bits set (one pass, not a sum of 10,000-bit ints)."""
    digits = bytearray(b"0" * contract.MAX_RULES)
    top = -1
    for pos in positions:
        digits[pos] = 0x31
        top = max(top, pos)
    return int(digits[top::-1], 2) if top >= 0 else 0


# --- field-indexed kinds ---------------------------------------------------------


def _intervals(kind: str, rule: Rule) -> list[tuple[int, int]]:
    """The values (inclusive ranges) a rule allows for a field-indexed kind."""
    m = rule.match
    if kind == "PROTO":
        return [(m.proto, m.proto)]
    if kind == "SPORT":
        return [m.sport]
    if kind == "DPORT":
        return [m.dport]
    if kind == "VLAN":
        return [(m.vlan, m.vlan)]
    if kind == "ETHERTYPE":
        return [(m.ethertype, m.ethertype)]
    if kind == "TCP_FLAGS":
        set_mask, clear_mask = m.tcp_flags
        return [(f, f) for f in range(256) if f & set_mask == set_mask and not f & clear_mask]
    if kind == "ICMP":
        base = m.icmp_type << 8
        if m.icmp_code is None:
            return [(base, base | 0xFF)]
        return [(base | m.icmp_code, base | m.icmp_code)]
    if kind == "ESTABLISHED":
        return [(1, 1)]  # the frame answers a live flow
    raise ValueError(kind)


@dataclass
class ValueClasses:
    """A field-indexed kind: value -> class id, and each class's bitmap."""

    index: array  # 'I', one class id per value
    bitmaps: list[int]

    @property
    def count(self) -> int:
        return len(self.bitmaps)


def value_classes(kind: str, users: list[tuple[int, Rule]], wildcard: int) -> ValueClasses:
    """Sweep the boundaries of the rules' value ranges: between two
    boundaries the set of allowing rules, and so the class, is constant."""
    entries = _VALUE_ENTRIES[kind]
    starts: dict[int, list[int]] = {}
    ends: dict[int, list[int]] = {}
    for pos, rule in users:
        for lo, hi in _intervals(kind, rule):
            starts.setdefault(lo, []).append(pos)
            ends.setdefault(hi + 1, []).append(pos)
    bounds = sorted(set(starts) | set(ends) | {0, entries})
    classes: dict[int, int] = {wildcard: 0}
    bitmaps = [wildcard]
    index = array("I", [0]) * entries
    current = 0
    for a, b in zip(bounds, bounds[1:]):
        for pos in ends.get(a, ()):
            current &= ~(1 << pos)
        for pos in starts.get(a, ()):
            current |= 1 << pos
        if b > entries:
            b = entries
        if a >= b:
            continue
        bm = wildcard | current
        cid = classes.get(bm)
        if cid is None:
            cid = classes[bm] = len(bitmaps)
            bitmaps.append(bm)
        if cid:
            index[a:b] = array("I", [cid]) * (b - a)
    return ValueClasses(index, bitmaps)


# --- prefixes and MACs: multibit tries ------------------------------------------


@dataclass
class Trie:
    """A 65536-entry root on the first 16 bits, then 256-entry blocks."""

    width: int  # key bits: 32, 128 or 48
    root: array = field(default_factory=lambda: array("I", [0]) * contract.TRIE_ROOT)
    blocks: list[array] = field(default_factory=list)
    longest: int = 0  # the longest prefix inserted

    def insert(self, value: int, length: int, cid: int) -> None:
        """Set every key under value/length to cid. Insert in increasing
        length order: a block is made filled with what covered it so far."""
        self.longest = max(self.longest, length)
        if length <= 16:
            start = value >> (self.width - 16)
            span = 1 << (16 - length)
            self.root[start : start + span] = array("I", [cid]) * span
            return
        table, index = self.root, value >> (self.width - 16)
        bit = 16
        while True:
            rest = length - bit  # bits of the prefix below this level
            entry = table[index]
            if entry & contract.TRIE_CHILD:
                block = self.blocks[entry & ~contract.TRIE_CHILD]
            else:
                block = array("I", [entry]) * contract.TRIE_BLOCK
                table[index] = contract.TRIE_CHILD | len(self.blocks)
                self.blocks.append(block)
            byte = (value >> (self.width - bit - 8)) & 0xFF
            if rest <= 8:
                span = 1 << (8 - rest)
                block[byte : byte + span] = array("I", [cid]) * span
                return
            table, index, bit = block, byte, bit + 8

    def lookup(self, key: int) -> int:
        """The class of a key, as the program finds it (for tests)."""
        entry = self.root[key >> (self.width - 16)]
        bit = 16
        while entry & contract.TRIE_CHILD:
            byte = (key >> (self.width - bit - 8)) & 0xFF
            entry = self.blocks[entry & ~contract.TRIE_CHILD][byte]
            bit += 8
        return entry


@dataclass
class PrefixClasses:
    """A prefix kind: its tries (by family) and each class's (bitmap, plain)."""

    tries: dict[str, Trie]
    bitmaps: list[int]
    plain: list[int]  # decision index of the best plain rule, or NO_RULE

    @property
    def count(self) -> int:
        return len(self.bitmaps)


def prefix_classes(
    entries: dict[str, list[tuple[int, int, int | None, int | None]]],
    wildcard: int,
    widths: dict[str, int],
) -> PrefixClasses:
    """entries: trie name -> [(value, length, general position or None,
    (order, decision index) of a plain rule or None)]."""
    classes: dict[tuple[int, int], int] = {(wildcard, contract.NO_RULE): 0}
    bitmaps, plain = [wildcard], [contract.NO_RULE]
    tries: dict[str, Trie] = {}
    for name, items in entries.items():
        width = widths[name]
        # Per distinct prefix: the general rules on it, and its best plain rule.
        own: dict[tuple[int, int], list] = {}
        for value, length, pos, plain_rule in items:
            slot = own.setdefault((value, length), [0, None])
            if pos is not None:
                slot[0] |= 1 << pos
            if plain_rule is not None and (slot[1] is None or plain_rule < slot[1]):
                slot[1] = plain_rule
        lengths = sorted({length for _, length in own})
        acc: dict[tuple[int, int], tuple[int, tuple | None]] = {}
        trie = tries[name] = Trie(width)
        for value, length in sorted(own, key=lambda p: p[1]):
            bits, best = own[(value, length)]
            # Inherit from the nearest enclosing prefix in the set.
            for shorter in reversed(lengths):
                if shorter >= length:
                    continue
                up = (value >> (width - shorter) << (width - shorter)) if shorter else 0
                if (up, shorter) in acc:
                    up_bits, up_best = acc[(up, shorter)]
                    bits |= up_bits
                    if up_best is not None and (best is None or up_best < best):
                        best = up_best
                    break
            acc[(value, length)] = (bits, best)
            key = (wildcard | bits, best[1] if best is not None else contract.NO_RULE)
            cid = classes.get(key)
            if cid is None:
                cid = classes[key] = len(bitmaps)
                bitmaps.append(key[0])
                plain.append(key[1])
            trie.insert(value, length, cid)
    return PrefixClasses(tries, bitmaps, plain)


# --- the whole rule set ------------------------------------------------------------


@dataclass
class Built:
    """A rule set, analysed: what it needs from a layout, and its tables."""

    general: list[Rule]
    plain: list[Rule]
    values: dict[str, ValueClasses]
    prefixes: dict[str, PrefixClasses]  # "SRC", "DST", "SRC_MAC", "DST_MAC"
    needs: Needs
    wildcards: dict[str, int] = field(default_factory=dict)  # per kind: general rules not using it
    primaries: dict[str, int] = field(default_factory=dict)  # per kind: rules it is the primary kind of
    anywhere: int = 0  # general rules with no match at all
    devmap: dict[tuple, int] = field(default_factory=dict)  # redirect --to target lists: devmap offsets

    def tables(self, layout: Layout) -> bytes:
        """struct xdpctl_tables for layout (which must fit self.needs)."""
        out = bytearray(layout.tables_size)
        self.fill(memoryview(out), layout)
        return bytes(out)

    def fill(self, out: memoryview, layout: Layout) -> None:
        """Write struct xdpctl_tables for layout over out, all of it."""
        if not layout.fits(self.needs):
            raise ValueError("the layout does not fit this rule set")
        if len(out) != layout.tables_size:
            raise ValueError("the buffer is not the layout's size")
        _zero(out)
        sections = {s.name: s for s in layout.sections()}
        out[sections["ctz"].offset : sections["ctz"].offset + 64] = ctz_table()
        for kind, member, _ in VALUE_ARRAYS:
            if kind in self.values:
                s = sections[member]
                raw = self.values[kind].index.tobytes()
                out[s.offset : s.offset + len(raw)] = raw
        for kind, pc in self.prefixes.items():
            for name, trie in pc.tries.items():
                member = TRIES[name][0]
                root = sections[f"{member}_root"]
                out[root.offset : root.offset + root.size] = trie.root.tobytes()
                node = sections[f"{member}_node"]
                offset = node.offset
                for block in trie.blocks:
                    raw = block.tobytes()
                    out[offset : offset + len(raw)] = raw
                    offset += len(raw)
        for i, kind in enumerate(layout_kinds(layout)):
            s = sections[f"cls_{kind.lower()}"]
            if kind in self.values:
                bitmaps, plain = self.values[kind].bitmaps, None
            elif kind in self.prefixes:
                bitmaps, plain = self.prefixes[kind].bitmaps, self.prefixes[kind].plain
            else:  # compiled in, but no rule uses it now: everything is wildcard
                bitmaps, plain = [self.wildcard_all], None
            # Summaries mark the words of the rules this kind is primary for;
            # rules with no match are everywhere: in the first kind's.
            wildcard = self.wildcards.get(kind, self.wildcard_all)
            primary = self.primaries.get(kind, 0)
            everywhere = self.anywhere if i == 0 else 0
            summaries = [((bm & ~wildcard) & primary) | everywhere for bm in bitmaps]
            _write_records(out, s.offset, layout, bitmaps, plain, summaries, self.limited_positions)
        if "limited" in sections:
            s = sections["limited"]
            entries = self.limited_positions + [contract.NO_RULE] * (contract.LIMIT_K - len(self.limited_positions))
            out[s.offset : s.offset + s.size] = b"".join(p.to_bytes(4, "little") for p in entries)
        s = sections["decision"]
        offset = s.offset
        for rule in self.general + self.plain:
            targets, target = actions.decision_steer(rule, self.devmap)
            out[offset : offset + contract.DECISION.size] = contract.DECISION.pack(
                rule.order, rule.slot, rule.action, targets, target)
            offset += contract.DECISION.size

    @property
    def wildcard_all(self) -> int:
        return (1 << len(self.general)) - 1

    @property
    def limited_positions(self) -> list[int]:
        """The positions (decision indexes) of the limited rules, in order."""
        return [pos for pos, r in enumerate(self.general) if r.limit is not None]


_ZEROS = bytes(1 << 20)


def _zero(out: memoryview) -> None:
    for start in range(0, len(out), len(_ZEROS)):
        chunk = min(len(_ZEROS), len(out) - start)
        out[start : start + chunk] = _ZEROS[:chunk]


def layout_kinds(layout: Layout) -> list[str]:
    return [name for name, bit in contract.KINDS if layout.kinds & bit]


def _write_records(out: bytearray, offset: int, layout: Layout, bitmaps: list[int], plain: list[int] | None,
                   summaries: list[int], limited: list[int] = ()) -> None:
    """Class records; the limited rules' bits (positions in limited) leave
    the bitmaps and summaries for the record's last word, bit k for the
    k-th limited rule (rules_kern.h consults them after the search)."""
    words = layout.words
    summary = contract.summary_words(words)
    size = 8 * layout.record_words
    out_of = sum(1 << pos for pos in limited)
    for i, (bm, sm) in enumerate(zip(bitmaps, summaries)):
        rec = offset + i * size
        if layout.actions & contract.FEAT_LIMITS:
            mine = sum(1 << k for k, pos in enumerate(limited) if bm >> pos & 1)
            out[rec + size - 8 : rec + size] = mine.to_bytes(8, "little")
            bm, sm = bm & ~out_of, sm & ~out_of
        p = contract.NO_RULE if plain is None else plain[i]
        out[rec : rec + 4] = p.to_bytes(4, "little")
        if not words:
            continue
        summ = 0
        rest = sm
        while rest:
            low = (rest & -rest).bit_length() - 1
            w = low // 64
            summ |= 1 << w
            rest &= ~((1 << (64 * (w + 1))) - 1)
        out[rec + 8 : rec + 8 + 8 * summary] = summ.to_bytes(8 * summary, "little")
        base = rec + 8 + 8 * summary
        out[base : base + 8 * words] = bm.to_bytes(8 * words, "little")


def _prefix_entries(rules_with_pos, plain_rules, which: str):
    """Trie entries of the src or dst prefixes, split by family."""
    entries: dict[str, list] = {}
    for pos, rule in rules_with_pos:
        net = getattr(rule.match, which)
        if net is not None:
            name = f"{which.upper()}{net.version}"
            entries.setdefault(name, []).append((int(net.network_address), net.prefixlen, pos, None))
    for index, rule in plain_rules:
        net = getattr(rule.match, which)
        if net is not None:
            name = f"{which.upper()}{net.version}"
            entries.setdefault(name, []).append((int(net.network_address), net.prefixlen, None, (rule.order, index)))
    return entries


def build(rules: list[Rule]) -> Built:
    ordered = sort_rules(rules)
    # A limited rule is never plain: the search must be able to go past it.
    general = [r for r in ordered if not r.match.plain or r.limit is not None]
    plain = [r for r in ordered if r.match.plain and r.limit is None]
    kinds = 0
    for r in ordered:
        kinds |= r.match.kinds
    gen_pos = list(enumerate(general))
    plain_idx = [(len(general) + i, r) for i, r in enumerate(plain)]

    wildcard_of: dict[int, int] = {}

    def wildcard(bit: int) -> int:
        """The general rules that do not use a kind, as a bitmap."""
        if bit not in wildcard_of:
            wildcard_of[bit] = bitmap(pos for pos, r in gen_pos if not r.match.kinds & bit)
        return wildcard_of[bit]

    values: dict[str, ValueClasses] = {}
    for kind, _, _ in VALUE_ARRAYS:
        bit = KIND_BIT[kind]
        if kinds & bit:
            users = [(pos, r) for pos, r in gen_pos if r.match.kinds & bit]
            values[kind] = value_classes(kind, users, wildcard(bit))

    prefixes: dict[str, PrefixClasses] = {}
    widths = {"SRC4": 32, "SRC6": 128, "DST4": 32, "DST6": 128, "SMAC": 48, "DMAC": 48}
    for kind, which in (("SRC", "src"), ("DST", "dst")):
        bit = KIND_BIT[kind]
        if kinds & bit:
            entries = _prefix_entries(gen_pos, plain_idx, which)
            prefixes[kind] = prefix_classes(entries, wildcard(bit), widths)
    for kind, which, trie in (("SRC_MAC", "src_mac", "SMAC"), ("DST_MAC", "dst_mac", "DMAC")):
        bit = KIND_BIT[kind]
        if kinds & bit:
            items = [(getattr(r.match, which), 48, pos, None) for pos, r in gen_pos if getattr(r.match, which) is not None]
            prefixes[kind] = prefix_classes({trie: items}, wildcard(bit), widths)

    tries = 0
    nodes: dict[str, int] = {}
    depths: dict[str, int] = {}
    for pc in prefixes.values():
        for name, trie in pc.tries.items():
            tries |= dict(contract.TRIES)[name]
            nodes[name] = len(trie.blocks)
            depths[name] = depth_for(trie.longest)
    caps = {k: v.count for k, v in values.items()}
    caps.update({k: v.count for k, v in prefixes.items()})
    needs = Needs(
        kinds=kinds,
        tries=tries,
        general=len(general),
        decisions=len(general) + len(plain),
        slots=max((r.slot for r in ordered), default=-1) + 1,
        caps=caps,
        nodes=nodes,
        depths=depths,
        actions=actions.acts(ordered) | (contract.FEAT_LIMITS if any(r.limit for r in ordered) else 0)
        | (contract.FEAT_BANS if any(r.limit and r.limit.block for r in ordered) else 0),
    )
    wildcards = {name: wildcard(bit) for name, bit in contract.KINDS if kinds & bit}
    primaries: dict[str, int] = {}
    anywhere = 0
    for pos, r in gen_pos:
        kind = primary_kind(r)
        if kind is None:
            anywhere |= 1 << pos
        else:
            primaries[kind] = primaries.get(kind, 0) | 1 << pos
    return Built(general, plain, values, prefixes, needs, wildcards, primaries, anywhere,
                 actions.devmap_offsets(ordered))

