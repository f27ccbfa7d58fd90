"""Every variant of the XDP program xdpctl can build loads and passes the
running kernel's verifier: the list of xdpctl/datapath/variants.py, walked
whole (tests/unit/test_variants.py checks that it covers every option and
kind of match of the contract).

Each variant is compiled (or taken from the compile cache) against maps
pinned in a private directory on bpffs, as attach does, loaded, and run once
over an IPv4/UDP frame and an ARP frame; so are the TC programs (the egress
program of --established, and the empty one its benchmark compares with). One line per variant says how it
went:

    variant options-drop-non-ip          ok    0.01 s  hit      462 insns  (Linux 6.18.44: drop-non-ip)

(the time is the compile, or the cache's load, and the verifier's; insns are
the kernel's count after its rewrites)

Runnable alone, and fast on a warm cache, so the same list can be walked in
VMs booted on other kernels, reading the cache the host filled:

    XDPCTL_CACHE_DIR=/var/cache/xdpctl .venv/bin/python -m pytest -q tests/kernel/test_variants.py
"""

from __future__ import annotations

import struct
import time

import pytest

from xdpctl.datapath import contract
from xdpctl.datapath.program import egress_program, empty_tc_program, filter_program
from xdpctl.datapath.variants import variants
from xdpctl.kernel import libbpf
from xdpctl.kernel.compiler import compile_and_load
from xdpctl.kernel.kernel_version import running_release
from xdpctl.lifecycle import steering, trace
from xdpctl.lifecycle.state import scratch_dir
from xdpctl.rules import engine

pytestmark = [pytest.mark.kernel, pytest.mark.matrix]

VARIANTS = variants()
XDP_DROP, XDP_PASS = 1, 2

# Hand-built frames (no scapy: the walk should cost the verifier's time only).
UDP4 = bytes.fromhex("020000000002" "020000000001" "0800"
                     "450000200001000040110000c6120001c6120002" "d43100090008" "0000") + b"ping"
ARP = bytes.fromhex("ffffffffffff" "020000000001" "0806"
                    "0001080006040001" "020000000001" "c6120001" "000000000000" "c6120002") + bytes(18)


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_the_variant_loads_and_runs(variant, capsys):
    with scratch_dir("variant") as directory:
        if variant.layout.engine:
            engine.create_tables(directory, variant.layout)
            steering.prepare(directory, variant.layout)  # the devmap and cpumap, as attach makes them
        if variant.trace_cap:  # the trace maps, as `xdpctl trace` makes them (selecting nothing)
            trace.prepare_maps(directory, bytes(contract.TRACE_CONFIG.size))
        start = time.perf_counter()
        loaded = compile_and_load(filter_program(variant.options, directory, variant.layout, variant.trace_cap))
        took = time.perf_counter() - start
        try:
            info = libbpf.prog_info(loaded.prog_fd)
            assert info.type == libbpf.BPF_PROG_TYPE_XDP and info.name == contract.PROG_NAME
            udp = libbpf.prog_test_run(loaded.prog_fd, UDP4).retval
            arp = libbpf.prog_test_run(loaded.prog_fd, ARP).retval
            insns = info.xlated_len // 8
            cache = "hit" if loaded.cached else "miss"
        finally:
            loaded.close()
    if variant.option_bits & contract.OPT_DROP_NON_IP:
        assert arp == XDP_DROP
    if not variant.layout.engine:  # no rules: the options alone decide
        assert udp == (XDP_DROP if variant.options.policy_deny else XDP_PASS)
        assert arp == (XDP_DROP if variant.options.drop_non_ip or variant.options.policy_deny else XDP_PASS)
    assert {udp, arp} <= {XDP_PASS, XDP_DROP}
    with capsys.disabled():
        print(f"\nvariant {variant.name:<28} ok  {took:6.2f} s  {cache:<5} {insns:6d} insns  "
              f"(Linux {running_release()}: {variant.describe()})", end="")


@pytest.mark.parametrize("request_of", [egress_program, lambda d: empty_tc_program()], ids=["egress", "empty-tc"])
def test_the_tc_programs_load_and_run(request_of, capsys):
    """The TC egress program of --established (one for every interface, no
    flags) and the empty TC program its benchmark compares it with: loaded as
    SCHED_CLS, they hand an outgoing frame on (TC_ACT_UNSPEC, -1)."""
    with scratch_dir("variant") as directory:
        request = request_of(directory)
        start = time.perf_counter()
        loaded = compile_and_load(request)
        took = time.perf_counter() - start
        try:
            info = libbpf.prog_info(loaded.prog_fd)
            assert info.type == libbpf.BPF_PROG_TYPE_SCHED_CLS and info.name == request.function[:15]
            assert libbpf.prog_test_run(loaded.prog_fd, UDP4).retval == 0xFFFFFFFF
            assert libbpf.prog_test_run(loaded.prog_fd, ARP).retval == 0xFFFFFFFF
            insns, cache = info.xlated_len // 8, "hit" if loaded.cached else "miss"
        finally:
            loaded.close()
    with capsys.disabled():
        print(f"\nvariant {request.function:<28} ok  {took:6.2f} s  {cache:<5} {insns:6d} insns  "
              f"(Linux {running_release()}: TC, {request.variant or 'empty'})", end="")


def test_the_frames_are_what_they_say():
    """The hand-built frames: an IPv4/UDP datagram and an ARP request."""
    assert struct.unpack_from("!H", UDP4, 12)[0] == 0x0800 and UDP4[23] == 17
    assert struct.unpack_from("!H", ARP, 12)[0] == 0x0806 and len(ARP) == 60
