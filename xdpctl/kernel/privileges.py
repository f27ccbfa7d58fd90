"""Which capabilities this process holds, and a clear error when one is missing.

Checked before anything changes, so that a missing privilege leaves the
machine as it was and the message names the capability, not an errno.

What counts is what the kernel honours, not what CapEff shows: in a user
namespace other than the machine's (`unshare -Ur`, a rootless container) a
process holds every capability over that namespace, yet the kernel checks
bpf() against the machine's user namespace and netlink against the one that
owns the network namespace, and answers EPERM. Such capabilities count as
none, so that every command refuses in one line before it starts.
"""

from __future__ import annotations

import os

from ..errors import MissingCapability

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

NAMES = {
    CAP_NET_ADMIN: "CAP_NET_ADMIN",
    CAP_NET_RAW: "CAP_NET_RAW",
    CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
    CAP_PERFMON: "CAP_PERFMON",
    CAP_BPF: "CAP_BPF",
}


# PROC_USER_INIT_INO (include/linux/proc_ns.h): the machine's user namespace,
# the same number on every kernel since 3.8.
INIT_USER_NS_INO = 0xEFFFFFFD
USER_NAMESPACE_NOTE = ("capabilities held in a user namespace (unshare -U, a rootless container), as here, "
                       "do not count: the kernel checks BPF and the machine's interfaces against the machine's")


def in_user_namespace(path: str = "/proc/self/ns/user") -> bool:
    """Whether this process is in a user namespace other than the machine's."""
    try:
        return os.stat(path).st_ino != INIT_USER_NS_INO
    except OSError:
        return False


def effective(status_path: str = "/proc/self/status", userns_path: str = "/proc/self/ns/user") -> set[int]:
    """The capabilities the kernel honours for what xdpctl does: CapEff, or
    none in a user namespace other than the machine's (see above)."""
    if in_user_namespace(userns_path):
        return set()
    try:
        with open(status_path) as f:
            for line in f:
                if line.startswith("CapEff:"):
                    mask = int(line.split()[1], 16)
                    return {bit for bit in range(64) if mask >> bit & 1}
    except OSError:
        pass
    return set()


def _has_bpf(caps: set[int]) -> bool:
    # CAP_SYS_ADMIN implies what CAP_BPF grants (the kernel checks either).
    return CAP_BPF in caps or CAP_SYS_ADMIN in caps


def require_bpf(action: str, caps: set[int] | None = None) -> None:
    """Reading or writing xdpctl's maps (bpf() is closed to the unprivileged)."""
    caps = effective() if caps is None else caps
    if not _has_bpf(caps):
        raise MissingCapability(action, "CAP_BPF")


def require_attach(action: str, caps: set[int] | None = None, loads: bool = True) -> None:
    """Changing an interface's XDP program; loads: and loading one, whose
    packet-pointer arithmetic the verifier allows only with CAP_PERFMON."""
    caps = effective() if caps is None else caps
    missing = []
    if not _has_bpf(caps):
        missing.append("CAP_BPF")
    if CAP_NET_ADMIN not in caps:
        missing.append("CAP_NET_ADMIN")
    if loads and CAP_PERFMON not in caps and CAP_SYS_ADMIN not in caps:
        missing.append("CAP_PERFMON")
    if missing:
        raise MissingCapability(action, " and ".join(missing))


def require_reopen_pins(action: str, caps: set[int] | None = None) -> None:
    """Compiling against maps that are already pinned (a replace keeps its
    counters, rules and tables): BCC reopens each by id
    (BPF_MAP_GET_FD_BY_ID), which the kernel allows only with CAP_SYS_ADMIN."""
    caps = effective() if caps is None else caps
    if CAP_SYS_ADMIN not in caps:
        raise MissingCapability(f"{action} (BCC reopens its pinned maps by id)", "CAP_SYS_ADMIN")


def require_net_admin(action: str, caps: set[int] | None = None) -> None:
    caps = effective() if caps is None else caps
    if CAP_NET_ADMIN not in caps:
        raise MissingCapability(action, "CAP_NET_ADMIN")


def require_namespaces(action: str, caps: set[int] | None = None) -> None:
    """Making, entering and removing network namespaces and their links."""
    caps = effective() if caps is None else caps
    missing = [NAMES[c] for c in (CAP_SYS_ADMIN, CAP_NET_ADMIN) if c not in caps]
    if missing:
        raise MissingCapability(action, " and ".join(missing))


def require_raw_send(action: str, netns: bool, caps: set[int] | None = None) -> None:
    """Sending frames through a packet socket (inside a namespace: entering it too)."""
    caps = effective() if caps is None else caps
    wanted = (CAP_NET_RAW, CAP_SYS_ADMIN) if netns else (CAP_NET_RAW,)
    missing = [NAMES[c] for c in wanted if c not in caps]
    if missing:
        raise MissingCapability(action, " and ".join(missing))


def can_inspect_foreign(caps: set[int] | None = None) -> bool:
    """Opening a program by id (to read its name) needs CAP_SYS_ADMIN."""
    caps = effective() if caps is None else caps
    return CAP_SYS_ADMIN in caps
