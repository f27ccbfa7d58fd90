"""The per-protocol pass/drop counters: reading, summing over CPUs, zeroing.

The map is a per-CPU array keyed by XDPCTL_COUNTER_KEY(class, verdict); each
CPU holds its own struct xdpctl_counter, and the total is their sum over every
possible CPU (the kernel sizes per-CPU values by possible, not online, CPUs).
"""

from __future__ import annotations

import struct

from . import contract, libbpf

Counters = dict[str, dict[str, dict[str, int]]]

_KEY = struct.Struct("<I")


def empty() -> Counters:
    return {c: {v: {"packets": 0, "bytes": 0} for v in contract.VERDICTS} for c in contract.CLASSES}


def decode(entries: list[tuple[bytes, bytes]]) -> Counters:
    """Counters from (key, per-CPU value) pairs as the kernel returns them."""
    out = empty()
    for key, value in entries:
        (k,) = _KEY.unpack(key)
        if k >= contract.COUNTERS_MAX:
            continue
        cls = contract.CLASSES[k // len(contract.VERDICTS)]
        verdict = contract.VERDICTS[k % len(contract.VERDICTS)]
        packets = nbytes = 0
        for p, b in contract.COUNTER.iter_unpack(value):
            packets += p
            nbytes += b
        out[cls][verdict] = {"packets": packets, "bytes": nbytes}
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


def read_fd(fd: int) -> Counters:
    value_size = contract.COUNTER.size * libbpf.possible_cpus()
    return decode(libbpf.map_lookup_batch(fd, _KEY.size, value_size, contract.COUNTERS_MAX))


def reset(pin: str) -> None:
    value_size = contract.COUNTER.size * libbpf.possible_cpus()
    keys = b"".join(_KEY.pack(k) for k in range(contract.COUNTERS_MAX))
    with libbpf.opened(pin) as fd:
        libbpf.map_update_batch(fd, keys, bytes(value_size * contract.COUNTERS_MAX), contract.COUNTERS_MAX)


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
