"""The per-protocol pass/drop counters: reading, summing over CPUs, zeroing.

The map is a per-CPU array keyed by class; each CPU holds its own struct
xdpctl_class_counters (packets and bytes per verdict), and the total is their
sum over every possible CPU (the kernel sizes per-CPU values by possible, not
online, CPUs).
"""

from __future__ import annotations

import struct

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


class WrongShape(OSError):
    """The map at the counters pin is not the contract's counters map (its
    value is not one struct xdpctl_class_counters per CPU): read nothing."""


def read_fd(fd: int) -> Counters:
    # The buffers are sized from the contract; a map of another shape (state
    # of another ABI that slipped past the meta check) would be misread.
    info = libbpf.map_info(fd)
    if (info.key_size, info.value_size) != (_KEY.size, contract.CLASS_COUNTERS.size):
        raise WrongShape(f"the counters map holds {info.value_size}-byte values, not the "
                         f"{contract.CLASS_COUNTERS.size} bytes of ABI {contract.ABI_VERSION}'s "
                         f"{len(contract.VERDICTS)} verdicts")
    return decode(libbpf.map_lookup_batch(fd, _KEY.size, _value_size(), len(contract.CLASSES)))


def reset(pin: str) -> None:
    n = len(contract.CLASSES)
    keys = b"".join(_KEY.pack(k) for k in range(n))
    with libbpf.opened(pin) as fd:
        libbpf.map_update_batch(fd, keys, bytes(_value_size() * n), n)


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
