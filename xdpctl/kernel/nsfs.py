"""Network namespaces by their kernel handle: is a namespace still alive?

A namespace is alive while anything refers to it: a process or one of its
threads, a bind mount anywhere (in any mount namespace), an open descriptor,
a socket. No list of holders seen from /proc is complete, so liveness is
asked of the kernel: since Linux 6.18, nsfs gives every namespace a file
handle (name_to_handle_at) holding its 64-bit id, never reused while the
machine runs, and open_by_handle_at opens it only while the namespace lives
(ESTALE once it is gone). The handle is taken from inside the namespace, by
the xdpctl that makes state there, and kept with the state.
"""

from __future__ import annotations

import ctypes
import errno
import os

AT_EMPTY_PATH = 0x1000
MAX_HANDLE = 128
OWN_NETNS = "/proc/thread-self/ns/net"

_libc = ctypes.CDLL(None, use_errno=True)


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE)]


def handle_of(path: str = OWN_NETNS) -> str | None:
    """The namespace's handle as text (TYPE_HEX), or None where the kernel
    gives namespaces no handle (before Linux 6.18)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fh = _FileHandle(handle_bytes=MAX_HANDLE)
        mount_id = ctypes.c_int()
        if _libc.name_to_handle_at(fd, b"", ctypes.byref(fh), ctypes.byref(mount_id), AT_EMPTY_PATH) != 0:
            return None
        return f"{fh.handle_type}_{bytes(fh.f_handle[: fh.handle_bytes]).hex()}"
    finally:
        os.close(fd)


def alive(handle: str, inode: int) -> bool | None:
    """True while the namespace of handle lives, False once it is gone, None
    when the kernel cannot say (no handles, no privilege: open_by_handle_at
    needs CAP_DAC_READ_SEARCH) or the handle is not of the namespace with
    that inode."""
    try:
        kind, raw = handle.split("_", 1)
        data = bytes.fromhex(raw)
        fh = _FileHandle(handle_bytes=len(data), handle_type=int(kind))
    except ValueError:
        return None
    if len(data) > MAX_HANDLE:
        return None
    fh.f_handle[: len(data)] = list(data)
    mount_fd = os.open(OWN_NETNS, os.O_RDONLY | os.O_CLOEXEC)  # any descriptor on nsfs
    try:
        fd = _libc.open_by_handle_at(mount_fd, ctypes.byref(fh), os.O_RDONLY | os.O_CLOEXEC)
        err = ctypes.get_errno()
    finally:
        os.close(mount_fd)
    if fd < 0:
        return False if err == errno.ESTALE else None
    try:
        return True if os.fstat(fd).st_ino == inode else None
    finally:
        os.close(fd)  # never hold it: that alone would keep it alive
