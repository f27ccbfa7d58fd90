"""The rule engine's maps on bpffs: the tables of both generations, the
generation switch (config), the recorded rules, and the per-rule hits.

A change never edits what the program is using. It writes the other
generation (rules and tables), then flips config.gen, one store the program
reads per frame: a crash before the flip leaves the old state whole, after
it the new one.
"""

from __future__ import annotations

import os
import struct
import time

from . import contract, libbpf
from .layout import Layout
from .rules import Rule

_KEY0 = struct.pack("<I", 0)
FLIP_SETTLE_S = 0.002  # frames in flight when gen flips finish well within this


def create_tables(directory: str, layout: Layout) -> str:
    """Create and pin the tables map of layout (both generations, zeroed)."""
    path = os.path.join(directory, layout.pin_tables())
    fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, "xdpctl_tables", 4, layout.tables_size, 2)
    try:
        libbpf.obj_pin(fd, path)
    finally:
        os.close(fd)
    return path


def write_tables(path: str, gen: int, blob: bytes) -> None:
    with libbpf.opened(path) as fd:
        libbpf.map_update(fd, struct.pack("<I", gen), blob)


def read_tables(path: str, gen: int, size: int) -> bytes:
    with libbpf.opened(path) as fd:
        return libbpf.map_lookup(fd, struct.pack("<I", gen), size) or b""


# --- config: the generation switch ---------------------------------------------


def read_config(path: str) -> tuple[int, int, int, int]:
    """(gen, rules, next_id, next_seq)."""
    with libbpf.opened(path) as fd:
        raw = libbpf.map_lookup(fd, _KEY0, contract.CONFIG.size)
    gen, rules, next_id, next_seq, _zero, _pad = contract.CONFIG.unpack(raw)
    return gen, rules, max(next_id, 1), max(next_seq, 1)


def write_config(path: str, gen: int, rules: int, next_id: int, next_seq: int) -> None:
    """One store: the flip. config.zero stays 0 (the verifier trick needs it)."""
    with libbpf.opened(path) as fd:
        libbpf.map_update(fd, _KEY0, contract.CONFIG.pack(gen, rules, next_id, next_seq, 0, 0))
    time.sleep(FLIP_SETTLE_S)


# --- the recorded rules ------------------------------------------------------------


def read_rules(path: str, gen: int) -> list[Rule]:
    with libbpf.opened(path) as fd:
        entries = libbpf.map_lookup_batch(fd, contract.RULE_KEY.size, contract.RULE.size, 2 * contract.MAX_RULES)
    out = []
    for key, value in entries:
        g, _id = contract.RULE_KEY.unpack(key)
        if g == gen:
            out.append(Rule.unpack(value))
    return out


def write_rules(path: str, gen: int, rules: list[Rule]) -> None:
    """Make the rules of generation gen exactly these."""
    with libbpf.opened(path) as fd:
        keys = libbpf.map_keys(fd, contract.RULE_KEY.size)
        for key in keys:
            if contract.RULE_KEY.unpack(key)[0] == gen:
                libbpf.map_delete(fd, key)
        if rules:
            packed_keys = b"".join(contract.RULE_KEY.pack(gen, r.id) for r in rules)
            values = b"".join(r.pack() for r in rules)
            libbpf.map_update_batch(fd, packed_keys, values, len(rules))


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
    if not slots:
        return
    with libbpf.opened(path) as fd:
        keys = b"".join(struct.pack("<I", s) for s in slots)
        libbpf.map_update_batch(fd, keys, bytes(_hits_value_size() * len(slots)), len(slots))


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
