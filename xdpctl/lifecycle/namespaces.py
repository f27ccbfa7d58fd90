"""Which network namespace xdpctl's state belongs to, and whether that
namespace still lives (clean removes the state of one that does not).

/sys/fs/bpf/xdpctl/ns<inode>/ holds the state of one namespace. Each of its
attachments records the namespace's kernel handle (kernel/nsfs.py), taken
from inside the namespace by the xdpctl that attaches there, in a small map
pinned as `netns`. Whether the namespace lives is then asked of the kernel by
that handle, not guessed from who seems to hold it: a bind mount anywhere, a
thread, an open descriptor or a socket keeps a namespace alive, and no look
through /proc sees them all.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

from ..kernel import libbpf, nsfs

PIN_NETNS = "netns"
_VALUE = struct.Struct(f"<I{nsfs.MAX_HANDLE + 16}s")  # length, then the handle as text


def record(att) -> None:
    """Pin the handle of the namespace this process is in into att's state
    (once). The caller holds the state lock, and acts inside the namespace."""
    path = att.pin(PIN_NETNS)
    if not att.exists() or os.path.exists(path):
        return
    handle = nsfs.handle_of()
    if handle is None:
        return  # a kernel before 6.18: there is no handle to keep
    data = handle.encode()
    fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, "xdpctl_netns", 4, _VALUE.size, 1)
    try:
        libbpf.map_update(fd, b"\0\0\0\0", _VALUE.pack(len(data), data))
        with contextlib.suppress(FileExistsError):
            libbpf.obj_pin(fd, path)
    finally:
        os.close(fd)


def _handle(att_dir: Path) -> str | None:
    try:
        with libbpf.opened(str(att_dir / PIN_NETNS)) as fd:
            raw = libbpf.map_lookup(fd, b"\0\0\0\0", _VALUE.size)
    except OSError:
        return None
    if raw is None:
        return None
    length, data = _VALUE.unpack(raw)
    return data[:length].decode(errors="replace")


def lives(ns_dir: Path, inode: int) -> bool | None:
    """Whether the namespace whose state is ns_dir lives, as the kernel says
    by a handle its attachments recorded; None when it cannot say (none
    recorded: state of an older xdpctl, or of a kernel before 6.18)."""
    try:
        entries = sorted(os.listdir(ns_dir))
    except FileNotFoundError:
        return False
    for entry in entries:
        handle = _handle(ns_dir / entry) if entry.startswith("if") else None
        if handle is not None:
            answer = nsfs.alive(handle, inode)
            if answer is not None:
                return answer
    return None
