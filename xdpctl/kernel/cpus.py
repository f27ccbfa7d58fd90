"""The machine's CPUs as the kernel lists them: those that may ever exist
(possible: what per-CPU maps and the cpumap are sized by) and those that run
now (online), from /sys/devices/system/cpu.
"""

from __future__ import annotations

CPU_DIR = "/sys/devices/system/cpu"


def parse_list(text: str) -> set[int]:
    """A kernel CPU list ("0-3,5,8-9", "" for none) as a set."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        out.update(range(int(lo), int(hi if sep else lo) + 1))
    return out


def _read(name: str, root: str) -> set[int]:
    with open(f"{root}/{name}") as f:
        return parse_list(f.read())


def possible(root: str = CPU_DIR) -> set[int]:
    return _read("possible", root)


def online(root: str = CPU_DIR) -> set[int]:
    return _read("online", root)
