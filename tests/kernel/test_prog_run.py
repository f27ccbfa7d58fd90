"""The XDP program on crafted frames through BPF_PROG_TEST_RUN (no veth):
every cut-short, malformed or random frame is classed exactly as the
Python oracle classes it, counted once with its length, and given the right
verdict. A read past the packet would not load (the verifier), and a
misclassification would show here."""

from __future__ import annotations

import random

import pytest

from xdpctl.datapath import classify, contract, counters
from xdpctl.traffic import frames
from xdpctl.kernel import libbpf
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
