"""Helpers for the kernel tests of --established (tests/kernel/test_flows*.py):
a bed that runs the egress program and the XDP program through
BPF_PROG_TEST_RUN on one flow table (no veth), and the frames a host and a
remote end exchange. Not a test module.

The frames are built here with scapy, independently of the C that parses
them: a reply is written as a reply (ports swapped, addresses swapped, an
echo reply for an echo request, an ICMP error that quotes what was sent), so
whether it belongs to a flow is known by construction.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import xdpctl.traffic.frames  # noqa: F401 - scapy, quietly, without the machine's interfaces
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from xdpctl.datapath import contract
from xdpctl.datapath.flow_table import Flow, FlowSettings
from xdpctl.datapath.layout import Layout
from xdpctl.datapath.program import FilterOptions, egress_program, filter_program
from xdpctl.kernel import libbpf
from xdpctl.kernel.compiler import compile_and_load
from xdpctl.lifecycle import egress
from xdpctl.lifecycle.state import scratch_dir
from xdpctl.rules import engine
from xdpctl.rules.model import Rule
from xdpctl.rules.tables import build

XDP_DROP, XDP_PASS = 1, 2
TC_ACT_UNSPEC = 0xFFFFFFFF  # -1, as the test run's u32 retval

HOST_MAC, REMOTE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
H4, R4, OTHER4 = "198.18.0.1", "198.18.0.2", "198.18.0.3"
H6, R6, OTHER6 = "fd78:6470::1", "fd78:6470::2", "fd78:6470::3"


def out(l3) -> bytes:
    """A frame the host sends."""
    return bytes(Ether(src=HOST_MAC, dst=REMOTE_MAC) / l3)


def back(l3, tags: tuple[int, ...] = ()) -> bytes:
    """A frame the host receives, behind VLAN tags (outer first: 802.1ad, then 802.1Q)."""
    eth = Ether(src=REMOTE_MAC, dst=HOST_MAC)
    if len(tags) == 2:
        return bytes(eth / Dot1AD(vlan=tags[0]) / Dot1Q(vlan=tags[1]) / l3)
    if len(tags) == 1:
        return bytes(eth / Dot1Q(vlan=tags[0]) / l3)
    return bytes(eth / l3)


def quoted(l3) -> bytes:
    """What an ICMP error quotes of a frame the host sent: its IP header and
    the first 8 bytes after it (RFC 792)."""
    raw = bytes(l3)
    ihl = (raw[0] & 0x0F) * 4 if raw[0] >> 4 == 4 else 40
    return raw[: ihl + 8]


@dataclass
class Bed:
    """An XDP program with rules and an egress program sharing one flow table,
    in a private bpffs directory."""

    directory: str
    xdp_fd: int
    egress_fd: int
    layout: Layout

    def send(self, frame: bytes) -> int:
        """The host sends frame: the egress program's return code."""
        return libbpf.prog_test_run(self.egress_fd, frame).retval

    def receive(self, frame: bytes) -> int:
        """frame arrives: the XDP program's verdict."""
        return libbpf.prog_test_run(self.xdp_fd, frame).retval

    def flows(self) -> list[Flow]:
        with libbpf.opened(os.path.join(self.directory, contract.PIN_FLOWS)) as fd:
            size = libbpf.map_info(fd).max_entries
            entries = libbpf.map_lookup_batch(fd, contract.FLOW_KEY.size, contract.FLOW.size, size)
        return [Flow.decode(k, v) for k, v in entries]

    def clear(self) -> None:
        """Empty the flow table."""
        with libbpf.opened(os.path.join(self.directory, contract.PIN_FLOWS)) as fd:
            for key in libbpf.map_keys(fd, contract.FLOW_KEY.size):
                libbpf.map_delete(fd, key)

    def set_rules(self, rules: list[Rule], gen: int = 1) -> None:
        built = build(rules)
        engine.write_tables(os.path.join(self.directory, self.layout.pin_tables()), gen, built, self.layout)
        engine.write_config(os.path.join(self.directory, contract.PIN_CONFIG), gen, len(rules), 1, 1)

    def hits(self) -> dict[int, tuple[int, int]]:
        return engine.read_hits(os.path.join(self.directory, self.layout.pin_hits()), self.layout.slots)


@contextlib.contextmanager
def bed(rules: list[Rule], options: FilterOptions = FilterOptions(policy_deny=True),
        settings: FlowSettings = FlowSettings()) -> Iterator[Bed]:
    built = build(rules)
    layout = Layout().grown(built.needs)
    with scratch_dir("flows") as d:
        egress.ensure_table(d, settings)
        engine.create_tables(d, layout)
        xdp = compile_and_load(filter_program(options, d, layout))
        try:
            tc = compile_and_load(egress_program(d))
            try:
                b = Bed(d, xdp.prog_fd, tc.prog_fd, layout)
                b.set_rules(rules)
                yield b
            finally:
                tc.close()
        finally:
            xdp.close()


# The flows of the tests, as (what the host sends, a reply to it).
def tcp4(sport=40000, dport=80, flags="S"):
    return IP(src=H4, dst=R4) / TCP(sport=sport, dport=dport, flags=flags)


def tcp4_back(sport=80, dport=40000, flags="SA", src=R4):
    return IP(src=src, dst=H4) / TCP(sport=sport, dport=dport, flags=flags)


def udp4(sport=5353, dport=53):
    return IP(src=H4, dst=R4) / UDP(sport=sport, dport=dport) / Raw(b"query")


def udp4_back(sport=53, dport=5353, src=R4):
    return IP(src=src, dst=H4) / UDP(sport=sport, dport=dport) / Raw(b"answer")


def tcp6(sport=40000, dport=443, flags="S"):
    return IPv6(src=H6, dst=R6) / TCP(sport=sport, dport=dport, flags=flags)


def tcp6_back(sport=443, dport=40000, flags="SA", src=R6, ext=False):
    ip = IPv6(src=src, dst=H6)
    if ext:
        ip = ip / IPv6ExtHdrHopByHop()
    return ip / TCP(sport=sport, dport=dport, flags=flags)


def udp6(sport=5353, dport=53):
    return IPv6(src=H6, dst=R6) / UDP(sport=sport, dport=dport) / Raw(b"query")


def udp6_back(sport=53, dport=5353):
    return IPv6(src=R6, dst=H6) / UDP(sport=sport, dport=dport) / Raw(b"answer")


def ping4(ident=77, seq=1):
    return IP(src=H4, dst=R4) / ICMP(type=8, id=ident, seq=seq) / Raw(b"x" * 16)


def ping4_back(ident=77, seq=1, type=0):
    return IP(src=R4, dst=H4) / ICMP(type=type, id=ident, seq=seq) / Raw(b"x" * 16)


def ping6(ident=78, seq=1):
    return IPv6(src=H6, dst=R6) / ICMPv6EchoRequest(id=ident, seq=seq) / Raw(b"x" * 16)


def ping6_back(ident=78, seq=1):
    return IPv6(src=R6, dst=H6) / ICMPv6EchoReply(id=ident, seq=seq) / Raw(b"x" * 16)


def frag_needed(what, mtu=1400, router=OTHER4):
    """ICMP destination unreachable, fragmentation needed (type 3 code 4), from a router on the path."""
    return IP(src=router, dst=H4) / ICMP(type=3, code=4, nexthopmtu=mtu) / Raw(quoted(what))


def time_exceeded4(what, router=OTHER4):
    return IP(src=router, dst=H4) / ICMP(type=11, code=0) / Raw(quoted(what))


def too_big6(what, mtu=1280, router=OTHER6):
    return IPv6(src=router, dst=H6) / ICMPv6PacketTooBig(mtu=mtu) / Raw(quoted(what))


def time_exceeded6(what, router=OTHER6):
    return IPv6(src=router, dst=H6) / ICMPv6TimeExceeded() / Raw(quoted(what))


def unreach6(what, router=OTHER6):
    return IPv6(src=router, dst=H6) / ICMPv6DestUnreach(code=4) / Raw(quoted(what))


# --- live: real sockets in the lab's two namespaces --------------------------------------------

import json  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from xdpctl.kernel.netlink import socket_in  # noqa: E402


class Server:
    """A TCP or UDP server in the peer's namespace, in a thread; each TCP
    connection gets reply(data) for what it sends, then whatever `stream`
    bytes the test asked for. Stopped (and its socket closed) by the test."""

    def __init__(self, netns: str, family: int, address: str, port: int, kind: int = socket.SOCK_STREAM):
        self.sock = socket_in(netns, family, kind)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.settimeout(0.2)
        self.kind = kind
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.accepted = 0
        if kind == socket.SOCK_STREAM:
            self.sock.listen(8)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 120  # bounded whatever the test does
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                if self.kind == socket.SOCK_DGRAM:
                    data, peer = self.sock.recvfrom(2048)
                    self.sock.sendto(b"answer:" + data, peer)
                    continue
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError as exc:
                if not self.stop.is_set():
                    self.errors.append(exc)
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            head = conn.recv(64)
            if head.startswith(b"stream "):
                _, total, chunk, pause = head.split()
                left, piece = int(total), b"s" * int(chunk)
                while left > 0 and not self.stop.is_set():
                    n = min(left, len(piece))
                    conn.sendall(piece[:n])
                    left -= n
                    time.sleep(float(pause))
            else:
                conn.sendall(b"pong:" + head)
        except OSError as exc:
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def tcp_exchange(netns: str, family: int, address: str, port: int, payload: bytes = b"ping",
                 timeout: float = 5.0) -> bytes:
    """Connect from netns, send payload, return all that comes back until EOF."""
    with socket_in(netns, family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((address, port))
        s.sendall(payload)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def udp_exchange(netns: str, address: str, port: int, payload: bytes = b"q", timeout: float = 2.0,
                 sock: socket.socket | None = None) -> bytes | None:
    """Send a datagram from netns; the answer, or None when none comes in time."""
    own = sock is None
    s = sock or socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(payload, (address, port))
        try:
            return s.recvfrom(2048)[0]
        except socket.timeout:
            return None
    finally:
        if own:
            s.close()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping(netns: str, address: str, ident: int, timeout: float = 2.0) -> bool:
    """One ICMP echo request from netns (a raw socket); whether its reply came."""
    with socket_in(netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(0.2)
        body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"xdpctl-ping"
        body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
        s.sendto(body, (address, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                packet = s.recv(2048)
            except socket.timeout:
                continue
            ihl = (packet[0] & 0x0F) * 4
            icmp_type, _, _, got_id = struct.unpack_from("!BBHH", packet, ihl)
            if icmp_type == 0 and got_id == ident:
                return True
        return False


class IcmpWatch:
    """A raw ICMP socket in netns: every ICMP message delivered to that host."""

    def __init__(self, netns: str):
        self.sock = socket_in(netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.settimeout(0.1)

    def seen(self, icmp_type: int, code: int, within: float = 1.0) -> list[bytes]:
        out, deadline = [], time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                packet = self.sock.recv(4096)
            except socket.timeout:
                continue
            ihl = (packet[0] & 0x0F) * 4
            if packet[ihl] == icmp_type and packet[ihl + 1] == code:
                out.append(packet)
        return out

    def close(self) -> None:
        self.sock.close()


def tc_filters(klab, hook: str = "egress") -> list[dict]:
    """The filters on a hook as iproute2's tc sees them (JSON), not xdpctl."""
    r = subprocess.run(["tc", "-j", "-n", klab.lab.host_netns, "filter", "show", "dev", klab.iface, hook],
                       capture_output=True, text=True, check=True)
    return [f for f in json.loads(r.stdout or "[]") if "options" in f]


def tc_qdiscs(klab) -> list[str]:
    r = subprocess.run(["tc", "-j", "-n", klab.lab.host_netns, "qdisc", "show", "dev", klab.iface],
                       capture_output=True, text=True, check=True)
    return sorted(q["kind"] for q in json.loads(r.stdout or "[]"))


def foreign_tc_filter(klab, pin_dir: str, hook: str = "egress", prio: int = 5) -> int:
    """Add, with iproute2's tc as another tool would, a bpf filter running a
    two-instruction program (return TC_ACT_UNSPEC) that xdpctl did not load;
    its program id. A clsact qdisc is made if there is none."""
    from xdpctl.kernel import libbpf

    insns = struct.pack("<BBhi", 0xB7, 0, 0, -1) + struct.pack("<BBhi", 0x95, 0, 0, 0)  # r0 = -1; exit
    fd = libbpf.prog_load(libbpf.BPF_PROG_TYPE_SCHED_CLS, "foreign_tc", "GPL", insns)
    try:
        pin = os.path.join(pin_dir, f"foreign_{hook}_{prio}")
        libbpf.obj_pin(fd, pin)
        prog_id = libbpf.prog_info(fd).id
    finally:
        os.close(fd)
    # nsenter, not tc -n: tc -n remounts /sys in a mount namespace of its own, without bpffs.
    enter = ["nsenter", f"--net=/var/run/netns/{klab.lab.host_netns}"]
    if "clsact" not in tc_qdiscs(klab):
        subprocess.run([*enter, "tc", "qdisc", "add", "dev", klab.iface, "clsact"], check=True)
    subprocess.run([*enter, "tc", "filter", "add", "dev", klab.iface, hook, "prio", str(prio), "bpf",
                    "object-pinned", pin, "da"], check=True, capture_output=True)
    return prog_id
