"""The BPF filesystem: finding it, and mounting it when it is missing.

xdpctl keeps every attachment's state pinned on bpffs, so a later process
(stats, detach) finds what an earlier attach left. Many systems mount it at
boot; some (like minimal VMs) do not, and xdpctl mounts it then.
"""

from __future__ import annotations

import ctypes
import errno
import os

from .errors import BpffsMissing, MissingCapability

BPFFS = "/sys/fs/bpf"


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def is_mounted(path: str = BPFFS, mountinfo: str = "/proc/self/mountinfo") -> bool:
    """True when path is a bpffs mount point (the last mount there wins)."""
    found = False
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) >= 5 and _unescape(fields[4]) == path:
                    found = right.split()[0] == "bpf"
    except OSError:
        return False
    return found


def ensure_mounted(path: str = BPFFS) -> bool:
    """Mount bpffs at path unless it is there. True when this call mounted it."""
    if is_mounted(path):
        return False
    if not os.path.isdir(path):
        raise BpffsMissing(
            f"{path} does not exist, so bpffs cannot be mounted there; "
            "is sysfs mounted? (`mount -t sysfs sysfs /sys`)"
        )
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    ret = libc.mount(b"bpf", os.fsencode(path), b"bpf", 0, b"mode=0700")
    if ret != 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            raise MissingCapability(
                f"mounting bpffs at {path} (it is not mounted)", "CAP_SYS_ADMIN"
            )
        raise BpffsMissing(
            f"bpffs is not mounted at {path} and mounting it failed ({os.strerror(err)}); "
            f"run `mount -t bpf bpf {path}`"
        )
    return True
