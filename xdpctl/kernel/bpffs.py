"""The BPF filesystem: finding it, and mounting it when it is missing.

xdpctl keeps every attachment's state pinned on bpffs, so a later process
(stats, detach) finds what an earlier attach left. Many systems mount it at
boot; some (like minimal VMs) do not, and xdpctl mounts it then.
"""

from __future__ import annotations

import ctypes
import errno
import os

from ..errors import BpffsMissing, MissingCapability

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


def _mounts(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, str, str]]:
    """(mount point, fs type, source) of every mount, in mount order."""
    out = []
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, tail = left.split(), right.split()
                if len(fields) >= 5 and len(tail) >= 2:
                    out.append((_unescape(fields[4]), tail[0], _unescape(tail[1])))
    except OSError:
        pass
    return out


def is_mounted(path: str = BPFFS, mountinfo: str = "/proc/self/mountinfo") -> bool:
    """True when path is a bpffs mount point (the last mount there wins)."""
    found = False
    for point, fstype, _ in _mounts(mountinfo):
        if point == path:
            found = fstype == "bpf"
    return found


def private_mount_namespace(mountinfo: str = "/proc/self/mountinfo") -> bool:
    """True when this process has a mount namespace of its own, unlike init.

    `ip netns exec` gives each command a fresh one with a fresh /sys: a bpffs
    mounted there ends with the command, and every pin on it. Where init's
    namespace cannot be read, the sign is the /sys that `ip netns exec`
    mounts, whose source is the namespace's name rather than "sysfs".
    """
    try:
        return os.stat("/proc/self/ns/mnt").st_ino != os.stat("/proc/1/ns/mnt").st_ino
    except OSError:
        sys_mounts = [(t, src) for point, t, src in _mounts(mountinfo) if point == "/sys"]
        return bool(sys_mounts) and sys_mounts[-1][0] == "sysfs" and sys_mounts[-1][1] != "sysfs"


def ensure_mounted(path: str = BPFFS) -> bool:
    """Mount bpffs at path unless it is there. True when this call mounted it."""
    if is_mounted(path):
        return False
    if private_mount_namespace():
        raise BpffsMissing(
            f"bpffs is not mounted at {path} in this mount namespace (as under `ip netns exec`), "
            "and pins made here would vanish when xdpctl exits; "
            "use `xdpctl --netns NAME ...` instead of `ip netns exec NAME xdpctl ...`"
        )
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
            f"run `mount -t bpf -o mode=0700 bpf {path}`"
        )
    return True
