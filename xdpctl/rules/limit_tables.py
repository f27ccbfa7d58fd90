"""Each limited rule's own table of buckets (--table), on bpffs.

The program finds a limited rule's table in the buckets map, an array of
maps by slot pinned beside the rules (lbuckets_<slots>): slot -> an LRU hash
of struct xdpctl_limit_key -> struct xdpctl_bucket of the rule's --table
keys (a --per rule rule keeps one bucket: a table of TABLE_MIN). Each table
is its own LRU, so one rule's churn (a spoofed flood) never evicts another
rule's keys, and memory is the sum of the tables' sizes whatever arrives.

xdpctl makes the buckets map before the compile (BCC and the compile cache
only open it), with the tables of the layout it replaces, and puts a rule's
table in before the rule is written where a program can read it. A rule
keeps its table for its life: a replace of the program, or an apply that
keeps the rule, keeps its buckets. A rule new to a slot gets a new table; a
slot no rule holds any more loses its table.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct

from ..datapath import contract
from ..datapath.layout import Layout
from ..errors import KernelError
from ..kernel import libbpf
from . import limits
from .model import Rule

NAME = "xdpctl_" + contract.PIN_BUCKETS  # the name repair finds it by (recovery._kernel_name)
TABLE_NAME = "xdpctl_bkt"


def entries(limit: limits.Limit) -> int:
    """The keys a rule's table holds: its --table, or TABLE_MIN for --per rule
    (one bucket; an LRU keeps some room for CPUs taking nodes at once)."""
    return limit.table if limit.keyed else limits.TABLE_MIN


def _new_table(max_entries: int) -> int:
    """A new table of max_entries keys (the kernel allocates it whole now)."""
    try:
        return libbpf.map_create(libbpf.BPF_MAP_TYPE_LRU_HASH, TABLE_NAME, contract.LIMIT_KEY.size,
                                 contract.BUCKET.size, max_entries)
    except OSError as exc:
        if exc.errno not in (errno.ENOMEM, errno.E2BIG, errno.EPERM):
            raise
        raise KernelError(f"the kernel would not make a table of {max_entries:,} keys for a rate-limited rule "
                          f"({exc.strerror}): give it a smaller --table (or free memory); nothing was "
                          "changed") from None


def _key(slot: int) -> bytes:
    return struct.pack("<I", slot)


def prepare(directory: str, layout: Layout) -> str:
    """Make and pin layout's buckets map in directory, where it is not pinned
    yet: before the compile, so that BCC opens it. A map of another layout
    there (the one this replaces) lends it its tables. Returns its pin."""
    path = os.path.join(directory, layout.pin_buckets())
    if os.path.exists(path):
        return path
    template = _new_table(1)  # the inner maps' type, key and value; the size is each table's own
    try:
        fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY_OF_MAPS, NAME, 4, 4, layout.slots, inner_fd=template)
    finally:
        os.close(template)
    try:
        for name in sorted(os.listdir(directory)):
            if name.startswith(contract.PIN_BUCKETS + "_"):
                with libbpf.opened(os.path.join(directory, name)) as old:
                    for slot, table_id in _tables(old, layout.slots).items():
                        with _opened(table_id) as table:
                            if table is not None:
                                libbpf.map_update(fd, _key(slot), struct.pack("<I", table))
        libbpf.obj_pin(fd, path)
    finally:
        os.close(fd)
    return path


def _table_id(outer: int, slot: int) -> int | None:
    """The map id of slot's table, or None if it has none."""
    raw = libbpf.map_lookup(outer, _key(slot), 4)
    return None if raw is None else struct.unpack("<I", raw)[0]


@contextlib.contextmanager
def _opened(table_id: int | None):
    """The fd of the table of that map id (None if there is none), closed after."""
    if table_id is None:
        yield None
        return
    try:
        fd = libbpf.map_fd_by_id(table_id)
    except FileNotFoundError:  # freed in between
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def _table(outer: int, slot: int):
    """The fd of slot's table (None if it has none), closed after."""
    return _opened(_table_id(outer, slot))


def _tables(outer: int, most: int | None = None) -> dict[int, int]:
    """slot -> its table's map id, for the slots that hold one (below most):
    one lookup each."""
    size = libbpf.map_info(outer).max_entries
    if most is not None:
        size = min(size, most)
    found = {s: _table_id(outer, s) for s in range(size)}
    return {s: i for s, i in found.items() if i is not None}


def sync(path: str, rules: list[Rule], fresh: set[int]) -> None:
    """Give each limited rule of rules (every rule a program may read) its
    table: a new one where the slot is fresh (a rule new to it) or holds
    none, or one of another size; then drop the tables of slots no limited
    rule holds."""
    wanted = {r.slot: entries(r.limit) for r in rules if r.limit is not None}
    with libbpf.opened(path) as outer:
        for slot, size in sorted(wanted.items()):
            if slot not in fresh:
                with _table(outer, slot) as fd:
                    if fd is not None and libbpf.map_info(fd).max_entries == size:
                        continue
            table = _new_table(size)
            try:
                libbpf.map_update(outer, _key(slot), struct.pack("<I", table))
            finally:
                os.close(table)
        for slot in _tables(outer):
            if slot not in wanted:
                libbpf.map_delete(outer, _key(slot))


def count_keys(path: str, slots: list[int]) -> dict[int, int]:
    """slot -> keys in its table (the ceiling's own bucket aside)."""
    out: dict[int, int] = {}
    with libbpf.opened(path) as outer:
        for slot in slots:
            with _table(outer, slot) as fd:
                if fd is None:
                    out[slot] = 0
                    continue
                keys = libbpf.map_keys(fd, contract.LIMIT_KEY.size)
                out[slot] = sum(1 for k in keys if k[4] != contract.LIMIT_FAMILY_CEILING)
    return out


def memory(path: str) -> dict[int, dict]:
    """slot -> its table's size and the kernel memory it holds (an LRU hash
    is allocated whole when it is made: it cannot grow)."""
    out = {}
    with libbpf.opened(path) as outer:
        for slot, table_id in _tables(outer).items():
            with _opened(table_id) as fd:
                if fd is not None:
                    out[slot] = {"max_entries": libbpf.map_info(fd).max_entries,
                                 "memlock_bytes": libbpf.map_memlock(fd)}
    return out


def update(path: str, slot: int, key: bytes, bucket: bytes) -> None:
    """Write one bucket into slot's table (benchmarks: a key already in it)."""
    with libbpf.opened(path) as outer, _table(outer, slot) as fd:
        if fd is None:
            raise FileNotFoundError(f"slot {slot} has no table of buckets")
        libbpf.map_update(fd, key, bucket)
