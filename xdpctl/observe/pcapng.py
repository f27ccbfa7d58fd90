"""A small pcapng writer: what `xdpctl trace` writes, and no more.

One section header, one interface description block per interface (its
name, Ethernet link type, the snap length, nanosecond timestamps), then an
enhanced packet block per frame with a comment (opt_comment). Every block
and option is padded to 32 bits and the file is in the host's byte order,
as the format allows (draft-ietf-opsawg-pcapng). tshark and Wireshark read
it; tests/unit/test_pcapng.py checks it with tshark and with a reading of
its own.

scapy's PcapNgWriter writes neither interface names nor per-packet
comments in the version xdpctl uses, and importing scapy costs half a
second, so this is written here.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINKTYPE_ETHERNET = 1
OPT_ENDOFOPT, OPT_COMMENT = 0, 1
SHB_USERAPPL = 4
IF_NAME, IF_DESCRIPTION, IF_TSRESOL = 2, 3, 9
TSRESOL_NS = 9  # 10^-9 s


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def option(code: int, value: bytes) -> bytes:
    return struct.pack("=HH", code, len(value)) + _pad(value)


def _options(opts: list[bytes]) -> bytes:
    return b"".join(opts) + struct.pack("=HH", OPT_ENDOFOPT, 0) if opts else b""


def block(block_type: int, body: bytes) -> bytes:
    """A block: type, total length, body (padded), total length again."""
    body = _pad(body)
    total = 12 + len(body)
    return struct.pack("=II", block_type, total) + body + struct.pack("=I", total)


def section_header(application: str) -> bytes:
    body = struct.pack("=IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)  # version 1.0, section length unknown
    return block(SHB, body + _options([option(SHB_USERAPPL, application.encode())]))


def interface_description(name: str, snaplen: int, description: str = "") -> bytes:
    opts = [option(IF_NAME, name.encode()), option(IF_TSRESOL, bytes([TSRESOL_NS]))]
    if description:
        opts.append(option(IF_DESCRIPTION, description.encode()))
    return block(IDB, struct.pack("=HHI", LINKTYPE_ETHERNET, 0, snaplen) + _options(opts))


def enhanced_packet(interface: int, ts_ns: int, data: bytes, orig_len: int, comment: str = "") -> bytes:
    body = struct.pack("=IIIII", interface, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(data), orig_len)
    opts = [option(OPT_COMMENT, comment.encode())] if comment else []
    return block(EPB, body + _pad(data) + _options(opts))


class Writer:
    """Writes a section to out: interfaces first (add_interface, each its
    index), then packets. flush=True pushes every packet out at once (a
    pipe into tshark sees it live)."""

    def __init__(self, out: BinaryIO, application: str, flush: bool = False):
        self._out = out
        self._flush = flush
        self._interfaces = 0
        self._packets = False
        out.write(section_header(application))

    def add_interface(self, name: str, snaplen: int, description: str = "") -> int:
        if self._packets:
            raise ValueError("interfaces come before the packets in this writer")
        self._out.write(interface_description(name, snaplen, description))
        self._interfaces += 1
        if self._flush:
            self._out.flush()
        return self._interfaces - 1

    def packet(self, interface: int, ts_ns: int, data: bytes, orig_len: int, comment: str = "") -> None:
        if not 0 <= interface < self._interfaces:
            raise ValueError(f"no interface {interface}")
        self._packets = True
        self._out.write(enhanced_packet(interface, ts_ns, data, orig_len, comment))
        if self._flush:
            self._out.flush()

    def flush(self) -> None:
        self._out.flush()
