"""The XDP program on crafted frames through BPF_PROG_TEST_RUN (no veth):
every cut-short, malformed or random frame is classed exactly as the
Python oracle classes it, counted once with its length, and given the right
verdict. A read past the packet would not load (the verifier), and a
misclassification would show here."""

from __future__ import annotations

import random
import secrets
import socket
import struct
import subprocess
import time

import pytest

from doc_classes import doc_class, extension_corpus

from xdpctl.datapath import classify, contract, counters
from xdpctl.traffic import frames
from xdpctl.kernel import libbpf, netlink
from xdpctl.kernel.compiler import compile_and_load
from xdpctl.datapath.program import FilterOptions, filter_program

pytestmark = pytest.mark.kernel

XDP_DROP, XDP_PASS = 1, 2
EP = frames.Endpoints("02:00:00:00:00:02", "02:00:00:00:00:01", "198.18.0.2", "198.18.0.1", "fd00::2", "fd00::1")


@pytest.fixture(scope="module", params=[False, True], ids=["count-only", "drop-non-ip"])
def prog(request):
    loaded = compile_and_load(filter_program(FilterOptions(drop_non_ip=request.param), None))
    yield loaded, request.param
    loaded.close()


def run_one(prog, frame: bytes):
    loaded, drop_non_ip = prog
    fd = loaded.map_fd("xdpctl_counters")
    before = counters.read_fd(fd)
    result = libbpf.prog_test_run(loaded.prog_fd, frame)
    after = counters.read_fd(fd)
    parsed = classify.parse(frame)
    verdict = "drop" if drop_non_ip and not parsed.is_ip else "pass"
    assert result.retval == (XDP_DROP if verdict == "drop" else XDP_PASS), frame.hex()
    assert result.data_out == frame
    for cls in contract.CLASSES:
        for v in contract.VERDICTS:
            dp = after[cls][v]["packets"] - before[cls][v]["packets"]
            db = after[cls][v]["bytes"] - before[cls][v]["bytes"]
            want = (1, len(frame)) if (cls, v) == (parsed.cls, verdict) else (0, 0)
            assert (dp, db) == want, (cls, v, parsed.cls, frame.hex())


def test_every_prefix_of_every_mix_frame(prog):
    # BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet header.
    for frame in frames.build("mix", EP):
        for n in range(14, len(frame) + 1):
            run_one(prog, frame[:n])


def mutated(frame: bytes, at: int, value: int) -> bytes:
    return frame[:at] + bytes([value]) + frame[at + 1:]


@pytest.mark.matrix
def test_malformed_headers(prog):
    mix = frames.build("mix", EP)
    udp4, udp6, hbh = mix[1], mix[8], mix[10]
    cases = [
        mutated(udp4, 14, 0x44),  # IHL 4
        mutated(udp4, 14, 0x65),  # version 6 inside an IPv4 EtherType
        mutated(udp4, 14, 0x4F),  # IHL 15: options run past the frame
        mutated(hbh, 14 + 40 + 1, 0xFF),  # hop-by-hop length past the frame
        mutated(udp6, 14 + 6, 59),  # no next header
        udp4[:12] + b"\x81\x00\x00\x01\x81\x00\x00\x02\x81\x00\x00\x03\x08\x00" + udp4[14:],  # 3 tags
        udp4[:12] + b"\x81\x00\x00",  # a cut tag
        udp4[:12] + b"\x05\xff" + udp4[14:],  # 802.3 length field
        udp4[:12] + b"\x88\xcc" + bytes(30),  # LLDP
    ]
    # Nine chained destination-options headers: more than the program walks.
    chain = b"".join(bytes([60, 0]) + bytes(6) for _ in range(9))
    v6 = bytearray(udp6[: 14 + 40])
    v6[14 + 6] = 60
    cases.append(bytes(v6) + chain + udp6[14 + 40 :])
    for frame in cases:
        run_one(prog, frame)
    assert classify.classify(cases[-1]) == "ipv6/other"


def test_random_mutations_agree_with_the_oracle(prog):
    rng = random.Random(20261124)
    mix = frames.build("mix", EP)
    for _ in range(1500):
        frame = bytearray(rng.choice(mix))
        for _ in range(rng.randint(1, 4)):
            frame[rng.randrange(12, min(len(frame), 80))] = rng.randrange(256)
        frame = bytes(frame[: rng.randint(14, len(frame))])
        run_one(prog, frame)


# --- against the document, not the oracle -------------------------------------


def class_counted(prog, frame: bytes) -> str:
    """The one class the program counted frame in (it must count it once)."""
    loaded, _ = prog
    fd = loaded.map_fd("xdpctl_counters")
    before = counters.read_fd(fd)
    libbpf.prog_test_run(loaded.prog_fd, frame)
    after = counters.read_fd(fd)
    moved = [cls for cls in contract.CLASSES for v in contract.VERDICTS
             if after[cls][v]["packets"] != before[cls][v]["packets"]]
    assert len(moved) == 1, (moved, frame.hex())
    return moved[0]


def test_every_truncation_of_extension_headers_is_classed_as_the_document_says(prog):
    """Issue 12 (17): an extension header cut short after its first 8 bytes
    made the frame its upper layer's class; the document says ipv6/other."""
    for frame in extension_corpus():
        for n in range(14, len(frame) + 1):
            assert class_counted(prog, frame[:n]) == doc_class(frame[:n]), (n, frame[:n].hex())


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def kernel_sent_frames():
    """IPv6 frames with extension headers that the kernel itself built:
    fragments (an MTU of 1280 under a 3000-byte datagram), MLD reports
    (hop-by-hop), and SRv6 (a routing header of 40 bytes), captured raw at
    the receiving end of a veth pair in namespaces made here."""
    tag = secrets.token_hex(3)
    a, b = f"xdpctl-cap{tag}-a", f"xdpctl-cap{tag}-b"
    made = []
    try:
        for ns in (a, b):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", "ca" + tag, "mtu", "1280", "netns", a, "type", "veth",
            "peer", "name", "cb" + tag, "mtu", "1280", "netns", b)
        for ns, dev, addr in ((a, "ca" + tag, "fd01::1"), (b, "cb" + tag, "fd01::2")):
            _ip("addr", "add", f"{addr}/64", "dev", dev, "nodad", ns=ns)
            _ip("link", "set", dev, "up", ns=ns)
        _ip("-6", "neigh", "add", "fd01::2", "lladdr", "02:00:00:00:ca:02", "dev", "ca" + tag, ns=a)
        _ip("link", "set", "cb" + tag, "address", "02:00:00:00:ca:02", ns=b)
        # SRv6 inline: the kernel inserts a routing header with two segments.
        _ip("-6", "route", "add", "fd02::/64", "encap", "seg6", "mode", "inline", "segs", "fd01::2",
            "dev", "ca" + tag, ns=a)
        _ip("-6", "neigh", "replace", "fd02::9", "lladdr", "02:00:00:00:ca:02", "dev", "ca" + tag, ns=a)
        cap = netlink.socket_in(b, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
        with cap:
            cap.bind(("cb" + tag, 0))
            cap.settimeout(0.2)
            tx = netlink.socket_in(a, socket.AF_INET6, socket.SOCK_DGRAM)
            with tx:
                tx.sendto(bytes(3000), ("fd01::2", 9))  # fragments
                tx.sendto(b"srv6", ("fd02::9", 9))       # a routing header
                # Joining a group makes the kernel send MLD reports (hop-by-hop).
                with netlink.in_netns(a):
                    ifindex = socket.if_nametoindex("ca" + tag)
                group = socket.inet_pton(socket.AF_INET6, "ff12::1234")
                tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group + struct.pack("@I", ifindex))
                got: list[bytes] = []
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and len(got) < 64:
                    try:
                        got.append(cap.recv(65535))
                    except socket.timeout:
                        if {0, 43, 44} <= {f[20] for f in got}:
                            break
        yield got
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def test_frames_the_kernel_sent_are_classed_as_the_document_says(prog, kernel_sent_frames):
    firsts = {f[20] for f in kernel_sent_frames}  # the IPv6 next header of each frame
    assert {0, 43, 44} <= firsts, sorted(firsts)
    srh = [f for f in kernel_sent_frames if f[20] == 43]
    assert any((f[55] + 1) * 8 > 8 for f in srh)  # longer than its first 8 bytes
    for frame in kernel_sent_frames:
        for n in range(14, len(frame) + 1):
            assert class_counted(prog, frame[:n]) == doc_class(frame[:n]), (n, frame[:n].hex())
            assert classify.classify(frame[:n]) == doc_class(frame[:n])
