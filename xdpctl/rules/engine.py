"""The rule engine's maps on bpffs: the tables of both generations, the
generation switch (config), the recorded rules, and the per-rule hits.

A change never edits what the program is using. It writes the other
generation (rules and tables), then flips config.gen, one store the program
reads per frame: a crash before the flip leaves the old state whole, after
it the new one.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

from ..datapath import contract, counters
from ..kernel import libbpf
from ..datapath.layout import Layout
from . import limit_tables, limits
from .model import Rule

_KEY0 = struct.pack("<I", 0)
FLIP_SETTLE_S = 0.002  # frames in flight when gen flips finish well within this


def create_tables(directory: str, layout: Layout) -> str:
    """Create and pin the tables map of layout (both generations, zeroed),
    and the buckets map where layout has limits (rules/limit_tables.py).
    The tables map is mmapable: a change writes the inactive generation in place, with
    no copy of tens of megabytes through a syscall."""
    path = os.path.join(directory, layout.pin_tables())
    fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, "xdpctl_tables", 4, layout.tables_size, 2,
                           libbpf.BPF_F_MMAPABLE)
    try:
        libbpf.obj_pin(fd, path)
    finally:
        os.close(fd)
    if layout.actions & contract.FEAT_LIMITS:
        limit_tables.prepare(directory, layout)  # the buckets map, which BCC opens too
    return path


def write_tables(path: str, gen: int, built, layout: Layout) -> None:
    """Fill generation gen's tables from a tables.Built (which the program is
    not reading: gen is the inactive one, or the program is not attached)."""
    with libbpf.opened(path) as fd:
        info = libbpf.map_info(fd)
        if not info.flags & libbpf.BPF_F_MMAPABLE:  # made by an older xdpctl
            libbpf.map_update(fd, struct.pack("<I", gen), built.tables(layout))
            return
        # An mmapable array lays its values out back to back, 8-byte aligned.
        stride = (info.value_size + 7) & ~7
        length = -(-info.max_entries * stride // mmap.PAGESIZE) * mmap.PAGESIZE
        with mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as region:
            view = memoryview(region)[gen * stride : gen * stride + info.value_size]
            try:
                built.fill(view, layout)
            finally:
                view.release()


def read_tables(path: str, gen: int, size: int) -> bytes:
    with libbpf.opened(path) as fd:
        return libbpf.map_lookup(fd, struct.pack("<I", gen), size) or b""


# --- config: the generation switch ---------------------------------------------


def read_config_raw(path: str) -> bytes:
    """The config as stored (struct xdpctl_config)."""
    with libbpf.opened(path) as fd:
        return libbpf.map_lookup(fd, _KEY0, contract.CONFIG.size) or bytes(contract.CONFIG.size)


def read_config(path: str) -> tuple[int, int, int, int]:
    """(gen, rules, next_id, next_seq)."""
    gen, rules, next_id, next_seq, _zero, _pad = contract.CONFIG.unpack(read_config_raw(path))
    return gen, rules, max(next_id, 1), max(next_seq, 1)


def config_value(gen: int, rules: int, next_id: int, next_seq: int) -> bytes:
    """A struct xdpctl_config; its padding stays 0."""
    return contract.CONFIG.pack(gen, rules, next_id, next_seq, 0, 0)


def store_config(path: str, raw: bytes) -> None:
    """One store: the flip (or its undoing, by recovery)."""
    with libbpf.opened(path) as fd:
        libbpf.map_update(fd, _KEY0, raw)
    time.sleep(FLIP_SETTLE_S)


def write_config(path: str, gen: int, rules: int, next_id: int, next_seq: int) -> None:
    store_config(path, config_value(gen, rules, next_id, next_seq))


# --- the recorded rules ------------------------------------------------------------


def read_rules_raw(path: str) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """Both generations' rules as stored: id -> struct xdpctl_rule, per gen."""
    with libbpf.opened(path) as fd:
        entries = libbpf.map_lookup_batch(fd, contract.RULE_KEY.size, contract.RULE.size, 2 * contract.MAX_RULES)
    out: tuple[dict[int, bytes], dict[int, bytes]] = ({}, {})
    for key, value in entries:
        g, rule_id = contract.RULE_KEY.unpack(key)
        out[g & 1][rule_id] = value
    return out


def read_rules(path: str, gen: int) -> list[Rule]:
    targets = read_targets_raw(os.path.dirname(path))[gen]
    return [Rule.unpack(raw, targets.get(rule_id)) for rule_id, raw in read_rules_raw(path)[gen].items()]


# --- the targets of redirect --to rules ---------------------------------------------
# A map of user space's own beside the rules (the program never reads it):
# (generation, rule id) -> struct xdpctl_targets, made with the first such rule.

_TARGETS_ENTRIES = 2 * contract.MAX_RULES


def read_targets_raw(directory: str) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """Both generations' redirect targets as stored: rule id -> struct xdpctl_targets."""
    out: tuple[dict[int, bytes], dict[int, bytes]] = ({}, {})
    try:
        with libbpf.opened(os.path.join(directory, contract.PIN_TARGETS)) as fd:
            entries = libbpf.map_lookup_batch(fd, contract.RULE_KEY.size, contract.TARGETS.size, _TARGETS_ENTRIES)
    except FileNotFoundError:
        return out
    for key, value in entries:
        g, rule_id = contract.RULE_KEY.unpack(key)
        out[g & 1][rule_id] = value
    return out


def _targets_fd(directory: str) -> int:
    return libbpf.pinned_map(os.path.join(directory, contract.PIN_TARGETS), libbpf.BPF_MAP_TYPE_HASH,
                             "xdpctl_targets", contract.RULE_KEY.size, contract.TARGETS.size, _TARGETS_ENTRIES,
                             libbpf.BPF_F_NO_PREALLOC)


def write_targets(directory: str, gen: int, rules: list[Rule], stored: dict[int, bytes] | None = None) -> None:
    """Make generation gen's redirect targets exactly those of rules (only
    the difference is written; the map is made with the first)."""
    if stored is None:
        stored = read_targets_raw(directory)[gen]
    packed = {r.id: raw for r in rules if (raw := r.pack_targets()) is not None}
    gone = [rule_id for rule_id in stored if rule_id not in packed]
    changed = [(rule_id, raw) for rule_id, raw in packed.items() if stored.get(rule_id) != raw]
    if not gone and not changed:
        return
    fd = _targets_fd(directory)
    try:
        libbpf.map_delete_batch(fd, b"".join(contract.RULE_KEY.pack(gen, i) for i in gone), len(gone))
        libbpf.map_update_batch(fd, b"".join(contract.RULE_KEY.pack(gen, i) for i, _ in changed),
                                b"".join(raw for _, raw in changed), len(changed))
    finally:
        os.close(fd)


# struct xdpctl_rule opens with id, seq and slot (u32 each).
RULE_ID_SLOT = struct.Struct("<I4xI")


def read_rule_slots(path: str, gen: int) -> dict[int, int]:
    """Generation gen's rules as id -> hits slot, decoding nothing else: what
    the exporter reads at every scrape, for every rule."""
    return {rule_id: RULE_ID_SLOT.unpack_from(raw)[1] for rule_id, raw in read_rules_raw(path)[gen].items()}


def write_rules(path: str, gen: int, rules: list[Rule], stored: dict[int, bytes] | None = None) -> None:
    """Make the rules of generation gen exactly these. stored: what gen holds
    now (read when not given); only the difference is written."""
    if stored is None:
        stored = read_rules_raw(path)[gen]
    packed = {r.id: r.pack() for r in rules}
    gone = [rule_id for rule_id in stored if rule_id not in packed]
    changed = [(rule_id, raw) for rule_id, raw in packed.items() if stored.get(rule_id) != raw]
    with libbpf.opened(path) as fd:
        libbpf.map_delete_batch(fd, b"".join(contract.RULE_KEY.pack(gen, i) for i in gone), len(gone))
        libbpf.map_update_batch(fd, b"".join(contract.RULE_KEY.pack(gen, i) for i, _ in changed),
                                b"".join(raw for _, raw in changed), len(changed))


# --- rate limits ---------------------------------------------------------------------


def write_limits(path: str, rules: list[Rule]) -> None:
    """Each rule's struct xdpctl_limit at its slot (zero: not limited). A
    slot is a rule's for its life, and its limit is part of what the rule
    is, so rewriting the rules a program reads changes nothing it sees."""
    if not rules:
        return
    with libbpf.opened(path) as fd:
        keys = b"".join(struct.pack("<I", r.slot) for r in rules)
        values = b"".join(limits.datapath(r.limit) for r in rules)
        libbpf.map_update_batch(fd, keys, values, len(rules))


def read_limit_stats(path: str, slots: list[int]) -> dict[int, tuple[int, int, int, int]]:
    """slot -> (within, within_bytes, new_keys, ceiling_over), summed over CPUs."""
    size = contract.LIMIT_STATS.size * libbpf.possible_cpus()
    out = {}
    with libbpf.opened(path) as fd:
        for slot in slots:
            raw = libbpf.map_lookup(fd, struct.pack("<I", slot), size) or bytes(size)
            totals = [0, 0, 0, 0]
            for values in contract.LIMIT_STATS.iter_unpack(raw):
                totals = [a + b for a, b in zip(totals, values)]
            out[slot] = tuple(totals)
    return out


def zero_limit_stats(path: str, slots: list[int]) -> None:
    """A limited rule new to a slot starts at zero."""
    if not slots:
        return
    size = contract.LIMIT_STATS.size * libbpf.possible_cpus()
    with libbpf.opened(path) as fd:
        keys = b"".join(struct.pack("<I", s) for s in slots)
        libbpf.map_update_batch(fd, keys, bytes(size * len(slots)), len(slots))


# --- hits --------------------------------------------------------------------------


def _hits_value_size() -> int:
    return contract.COUNTER.size * libbpf.possible_cpus()


def read_hits(path: str, slots: int) -> dict[int, tuple[int, int]]:
    """slot -> (packets, bytes), summed over CPUs, for slots with any."""
    with libbpf.opened(path) as fd:
        entries = libbpf.map_lookup_batch(fd, 4, _hits_value_size(), slots)
    out = {}
    for key, value in entries:
        packets = nbytes = 0
        for p, b in contract.COUNTER.iter_unpack(value):
            packets += p
            nbytes += b
        if packets or nbytes:
            out[struct.unpack("<I", key)[0]] = (packets, nbytes)
    return out


def zero_hits(path: str, slots: list[int]) -> None:
    """Start the hits of slots given to new rules at zero (and their baseline)."""
    if not slots:
        return
    with libbpf.opened(path) as fd:
        keys = b"".join(struct.pack("<I", s) for s in slots)
        libbpf.map_update_batch(fd, keys, bytes(_hits_value_size() * len(slots)), len(slots))
    counters.forget_hits(os.path.dirname(path), slots)


def add_hits(path: str, hits: dict[int, tuple[int, int]]) -> None:
    """Add counts to slots (carrying hits over to a new hits map); the
    amount goes to CPU 0's share."""
    if not hits:
        return
    size = _hits_value_size()
    with libbpf.opened(path) as fd:
        for slot, (packets, nbytes) in hits.items():
            key = struct.pack("<I", slot)
            raw = bytearray(libbpf.map_lookup(fd, key, size) or bytes(size))
            p, b = contract.COUNTER.unpack_from(raw, 0)
            contract.COUNTER.pack_into(raw, 0, p + packets, b + nbytes)
            libbpf.map_update(fd, key, bytes(raw))
