"""Sending prebuilt frames in bulk: an AF_PACKET socket and sendmmsg(2).

scapy's sendp() builds and sends one frame per call, through several layers
of Python; a flood needs far more. Here the frames are already bytes, and one
sendmmsg() call hands the kernel up to BATCH of them. Every send is bounded by
a frame count, a duration, or both.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from ..kernel.netlink import socket_in

ETH_P_ALL = 0x0003
BATCH = 1024
MAX_RETRIES = 2000  # ENOBUFS back-offs before a send gives up


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_IoVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
_libc.sendmmsg.restype = ctypes.c_int


@dataclass
class SendResult:
    sent: int = 0
    seconds: float = 0.0
    per_frame: list[int] = field(default_factory=list)  # how often each distinct frame went out

    @property
    def fps(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class Sender:
    """An AF_PACKET socket bound to one interface, in its network namespace."""

    def __init__(self, ifname: str, netns: str | None = None):
        self.sock = socket_in(netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            # Frames the socket would receive are of no use to a sender.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
            self.sock.bind((ifname, 0))
        except OSError:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Sender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_one(self, frame: bytes) -> None:
        self.sock.send(frame)

    def send(
        self,
        frames: list[bytes],
        count: int | None = None,
        *,
        rate: float | None = None,
        duration: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> SendResult:
        """Send frames round-robin until count frames or duration seconds."""
        if not frames:
            raise ValueError("no frames to send")
        if count is None and duration is None:
            raise ValueError("a send must be bounded by a count or a duration")
        n = len(frames)
        # The frames in one buffer, an iovec each.
        block = ctypes.create_string_buffer(b"".join(frames), sum(map(len, frames)))
        iovs = (_IoVec * n)()
        at = ctypes.addressof(block)
        for iov, f in zip(iovs, frames):
            iov.iov_base, iov.iov_len = at, len(f)
            at += len(f)
        iov_at, iov_size = ctypes.addressof(iovs), ctypes.sizeof(_IoVec)
        # Up to BATCH frames: one ring of messages whose length is a multiple
        # of n, so that every batch starts again at frame 0 and needs no
        # rebuilding. More (a flood from many sources): a ring of BATCH
        # messages pointed at the next frames before each batch.
        ring_len = max(n, (BATCH // n) * n) if n <= BATCH else BATCH
        msgs = (_MMsgHdr * ring_len)()
        for i in range(ring_len):
            msgs[i].msg_hdr.msg_iov = ctypes.cast(iov_at + (i % n) * iov_size, ctypes.POINTER(_IoVec))
            msgs[i].msg_hdr.msg_iovlen = 1
        fd = self.sock.fileno()
        base, msg_size = ctypes.addressof(msgs), ctypes.sizeof(_MMsgHdr)
        # msg_iov of message i, as a raw pointer field (rewritten per batch when n > BATCH)
        iov_field = _MsgHdr.msg_iov.offset

        result = SendResult(per_frame=[0] * n)
        start = time.monotonic()
        deadline = start + duration if duration else None
        chunk = ring_len
        if rate:
            chunk = max(1, min(ring_len, int(rate / 100) or 1))
        retries = 0
        while count is None or result.sent < count:
            if deadline and time.monotonic() >= deadline:
                break
            want = chunk if count is None else min(chunk, count - result.sent)
            offset = result.sent % ring_len
            want = min(want, ring_len - offset)
            if n > BATCH:
                first = result.sent % n
                for k in range(want):
                    ctypes.c_void_p.from_address(base + (offset + k) * msg_size + iov_field).value = \
                        iov_at + ((first + k) % n) * iov_size
            done = _libc.sendmmsg(fd, base + offset * msg_size, want, 0)
            if done < 0:
                err = ctypes.get_errno()
                if err in (errno.ENOBUFS, errno.EAGAIN, errno.EINTR) and retries < MAX_RETRIES:
                    retries += 1
                    time.sleep(0.0005)
                    continue
                raise OSError(err, os.strerror(err))
            retries = 0
            first = result.sent % n
            for k in range(done):
                result.per_frame[(first + k) % n] += 1
            result.sent += done
            if progress:
                progress(result.sent)
            if rate:
                ahead = start + result.sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        result.seconds = time.monotonic() - start
        return result
