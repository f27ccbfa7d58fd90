"""The per-protocol pass/drop counters: reading, summing over CPUs, and the
baseline `stats --reset` leaves.

The map is a per-CPU array keyed by class; each CPU holds its own struct
xdpctl_class_counters (packets and bytes per verdict), and the total is their
sum over every possible CPU (the kernel sizes per-CPU values by possible, not
online, CPUs).

Resetting never writes the program's counters: user space cannot read and
zero a per-CPU value in one step, so a zeroing would lose every frame counted
between the read and the write. Instead `stats --reset` records what it read
as the baseline (a map pinned beside the counters, `baseline`), and `stats`
shows the counts above it: what one reset prints and what the next stats
shows add up to every frame. The same goes for the rules' hits, by slot.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass, field

from . import contract
from ..kernel import libbpf

Counters = dict[str, dict[str, dict[str, int]]]

_KEY = struct.Struct("<I")


def empty() -> Counters:
    return {c: {v: {"packets": 0, "bytes": 0} for v in contract.VERDICTS} for c in contract.CLASSES}


def decode(entries: list[tuple[bytes, bytes]]) -> Counters:
    """Counters from (key, per-CPU value) pairs as the kernel returns them."""
    out = empty()
    nv = len(contract.VERDICTS)
    for key, value in entries:
        (k,) = _KEY.unpack(key)
        if k >= len(contract.CLASSES):
            continue
        sums = [0] * (2 * nv)
        for per_cpu in contract.CLASS_COUNTERS.iter_unpack(value):
            for i, n in enumerate(per_cpu):
                sums[i] += n
        cls = contract.CLASSES[k]
        for v, verdict in enumerate(contract.VERDICTS):
            out[cls][verdict] = {"packets": sums[2 * v], "bytes": sums[2 * v + 1]}
    return out


def total(counters: Counters) -> dict[str, dict[str, int]]:
    out = {v: {"packets": 0, "bytes": 0} for v in contract.VERDICTS}
    for per_verdict in counters.values():
        for verdict, c in per_verdict.items():
            out[verdict]["packets"] += c["packets"]
            out[verdict]["bytes"] += c["bytes"]
    return out


def read(pin: str) -> Counters:
    with libbpf.opened(pin) as fd:
        return read_fd(fd)


def _value_size() -> int:
    return contract.CLASS_COUNTERS.size * libbpf.possible_cpus()


def read_fd(fd: int) -> Counters:
    return decode(libbpf.map_lookup_batch(fd, _KEY.size, _value_size(), len(contract.CLASSES)))


# --- the baseline of stats --reset ------------------------------------------------

PIN_BASELINE = "baseline"  # user space's own map: the program never reads it
_HIT = 1 << 31  # baseline keys: a class index, or _HIT | a rule's hits slot
_BASE = struct.Struct("<QQQQ")  # pass packets, bytes, drop packets, bytes (hits: the first two)
_BASELINE_ENTRIES = len(contract.CLASSES) + 2 * contract.MAX_RULES

Hits = dict[int, tuple[int, int]]  # slot -> (packets, bytes)


@dataclass
class Baseline:
    classes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    hits: Hits = field(default_factory=dict)


def read_baseline(directory: str) -> Baseline:
    """What the last `stats --reset` read (nothing before the first). Read it
    before the counters: a reset that runs meanwhile only raises it to what
    it read, which is at most what is read after."""
    out = Baseline()
    try:
        with libbpf.opened(os.path.join(directory, PIN_BASELINE)) as fd:
            entries = libbpf.map_lookup_batch(fd, _KEY.size, _BASE.size, _BASELINE_ENTRIES)
    except FileNotFoundError:
        return out
    for key, value in entries:
        (k,) = _KEY.unpack(key)
        numbers = _BASE.unpack(value)
        if k & _HIT:
            out.hits[k & ~_HIT] = numbers[:2]
        elif k < len(contract.CLASSES):
            out.classes[contract.CLASSES[k]] = numbers
    return out


def since(counters: Counters, base: Baseline) -> Counters:
    """The counts above the baseline."""
    out = empty()
    for cls, per in counters.items():
        b = base.classes.get(cls, (0, 0, 0, 0))
        for v, verdict in enumerate(contract.VERDICTS):
            out[cls][verdict] = {"packets": per[verdict]["packets"] - b[2 * v],
                                 "bytes": per[verdict]["bytes"] - b[2 * v + 1]}
    return out


def hits_since(hits: Hits, base: Baseline) -> Hits:
    out = {}
    for slot, (p, b) in hits.items():
        bp, bb = base.hits.get(slot, (0, 0))
        if (p - bp, b - bb) != (0, 0):
            out[slot] = (p - bp, b - bb)
    return out


def _baseline_fd(directory: str) -> int:
    """The baseline map, made and pinned on the first reset."""
    path = os.path.join(directory, PIN_BASELINE)
    try:
        return libbpf.obj_get(path)
    except FileNotFoundError:
        pass
    # A hash without preallocation replaces an element whole (RCU), so a
    # stats that reads meanwhile sees the old baseline or the new, not a mix.
    fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_HASH, "xdpctl_baseline", _KEY.size, _BASE.size,
                           _BASELINE_ENTRIES, libbpf.BPF_F_NO_PREALLOC)
    try:
        libbpf.obj_pin(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_baseline(directory: str, counters: Counters, hits: Hits) -> None:
    """Make what was read (the raw counters, and the hits of the slots given)
    the baseline. The caller holds the state lock."""
    keys, values = [], []
    for k, cls in enumerate(contract.CLASSES):
        per = counters[cls]
        keys.append(_KEY.pack(k))
        values.append(_BASE.pack(*(per[v][n] for v in contract.VERDICTS for n in ("packets", "bytes"))))
    for slot, (p, b) in hits.items():
        keys.append(_KEY.pack(_HIT | slot))
        values.append(_BASE.pack(p, b, 0, 0))
    fd = _baseline_fd(directory)
    try:
        libbpf.map_update_batch(fd, b"".join(keys), b"".join(values), len(keys))
    finally:
        os.close(fd)


def forget_hits(directory: str, slots: list[int]) -> None:
    """Drop the baseline of slots whose hits start again at zero (a new rule)."""
    with contextlib.suppress(FileNotFoundError):
        with libbpf.opened(os.path.join(directory, PIN_BASELINE)) as fd:
            for slot in slots:
                libbpf.map_delete(fd, _KEY.pack(_HIT | slot))


def rates(before: Counters, after: Counters, seconds: float) -> dict[str, dict[str, dict[str, float]]]:
    """Packets/s and bits/s per class and verdict between two readings."""
    seconds = max(seconds, 1e-9)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for cls in contract.CLASSES:
        out[cls] = {}
        for v in contract.VERDICTS:
            dp = after[cls][v]["packets"] - before[cls][v]["packets"]
            db = after[cls][v]["bytes"] - before[cls][v]["bytes"]
            # A reset between readings makes the difference negative: report 0.
            out[cls][v] = {"pps": max(dp, 0) / seconds, "bps": max(db, 0) * 8 / seconds}
    return out
