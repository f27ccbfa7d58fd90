"""Where shell completion finds its candidates: interface names and rule ids.

The shell runs xdpctl on every Tab, so this reads only what is cheap (sysfs,
socket calls, xdpctl's pinned state through the bpf syscall) and imports
neither pyroute2 nor BCC nor scapy. Nothing here raises: a candidate that
cannot be read (no root, no such namespace, no state) is simply not offered.
"""

from __future__ import annotations

import ctypes
import os
import socket

from ..datapath import contract
from ..rules import engine
from ..datapath.layout import Layout
from ..rules.model import Rule, sort_rules
from ..lifecycle.state import STATE_ROOT, State

NETNS_RUN_DIR = "/var/run/netns"
SYS_CLASS_NET = "/sys/class/net"
CLONE_NEWNET = 0x40000000


def enter_netns(name: str) -> bool:
    """Move this (short-lived completion) process into `ip netns` namespace
    NAME, as --netns does. False when it cannot (no such name, no CAP_SYS_ADMIN)."""
    if not name or "/" in name or name in (".", ".."):
        return False
    try:
        fd = os.open(os.path.join(NETNS_RUN_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if hasattr(os, "setns"):  # Python 3.12+
            os.setns(fd, CLONE_NEWNET)
            return True
        return ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) == 0
    except (OSError, AttributeError):
        return False
    finally:
        os.close(fd)


def interface_names(netns: str | None = None) -> list[str]:
    """The interfaces of the namespace xdpctl would act in, sorted.

    Without --netns, /sys/class/net lists them. sysfs keeps showing the
    namespace it was mounted in, so inside --netns the kernel is asked
    (if_nameindex, one netlink dump by libc)."""
    try:
        if netns is not None:
            if not enter_netns(netns):
                return []
            return sorted(name for _, name in socket.if_nameindex())
        return sorted(os.listdir(SYS_CLASS_NET))
    except Exception:  # noqa: BLE001 - completion offers nothing rather than fail
        return []


def recorded_rules(ifname: str, netns: str | None = None, state_root: str = STATE_ROOT) -> list[Rule]:
    """The rules xdpctl recorded for ifname, in decision order; [] when there
    are none or they cannot be read (reading bpffs pins needs root).

    This reads the active generation as xdpctl/lifecycle/deploy.py's Current.read does,
    without resolving the link through netlink: completion must stay cheap,
    and a stale candidate only earns the one-line error `rule del` gives."""
    try:
        if netns is not None and not enter_netns(netns):
            return []
        ino = os.stat("/proc/thread-self/ns/net").st_ino
        att = State(state_root).attachment(ino, socket.if_nametoindex(ifname))
        meta = att.read_meta() if att.exists() else None
        if meta is None or not Layout.unpack(meta.layout).engine:
            return []
        gen, _count, _next_id, _next_seq = engine.read_config(att.pin(contract.PIN_CONFIG))
        return sort_rules(engine.read_rules(att.pin(contract.PIN_RULES), gen))
    except Exception:  # noqa: BLE001 - completion offers nothing rather than fail
        return []
