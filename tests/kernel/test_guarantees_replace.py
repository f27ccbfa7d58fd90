"""Issue 5, guarantees 1-4: what is not xdpctl's is never replaced or removed
(the kernel's no-replace and compare-and-swap flags close the race that
xdpctl's own checks leave open); replacing xdpctl's own program leaves no
gap; pinned state of another ABI version is refused, not misread.

Already covered elsewhere, not repeated here: a foreign program loaded by
hand or by xdp-filter is refused by attach and detach, and --force replaces
it (test_foreign.py); counters and rules survive a replace
(test_attach_stats.py, test_rules.py).
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import time

import pytest

from conftest import attached_prog_id, verdicts
from state_checks import (
    FOREIGN_NAME,
    Stream,
    attachment,
    check_consistent,
    have_foreign_obj,
    ip_load_cmd,
    local_snapshot,
    load_foreign,
    one_line_error,
    raw_meta,
    run_with_intruder,
    state_dir,
    tree,
)
from xdpctl.datapath import contract
from xdpctl.traffic import frames
from xdpctl.kernel import libbpf
from xdpctl.kernel.netlink import in_netns, socket_in

pytestmark = pytest.mark.kernel
needs_foreign = pytest.mark.skipif(not have_foreign_obj(), reason="needs iproute2 and xdp-tools' xdpdump_xdp.o")

CHANGED = "changed while xdpctl was working; nothing was replaced"


# --- 1. no overwrite ------------------------------------------------------------


@needs_foreign
def test_a_program_another_tool_loaded_is_neither_replaced_nor_removed(klab):
    theirs = load_foreign(klab)
    before = local_snapshot(klab)
    for args in (["attach", klab.iface, "--drop-non-ip"], ["detach", klab.iface],
                 ["stats", klab.iface], ["rule", "add", klab.iface, "drop", "--proto", "udp"]):
        r = klab.xdpctl(*args, check=False)
        assert r.returncode == 1, (args, r.stderr)
        line = r.stderr.strip()
        if args[0] in ("attach", "detach"):
            assert f"{klab.iface} already carries XDP program {theirs} ({FOREIGN_NAME}), not xdpctl's" in line
        else:
            assert "xdpctl manages no program on" in line
        assert len(r.stderr.strip().splitlines()) == 1
    assert local_snapshot(klab) == before and attached_prog_id(klab) == theirs


@needs_foreign
def test_a_program_that_appears_while_attaching_is_not_replaced(klab):
    """The check saw an empty interface; another tool attaches before xdpctl
    does: only the kernel's no-replace flag stands in the way."""
    r = run_with_intruder(klab, ["attach", klab.iface], ip_load_cmd(klab))
    theirs = attached_prog_id(klab)
    one_line_error(r, 1, f"already carries XDP program {theirs} ({FOREIGN_NAME}), not xdpctl's",
                   "it appeared while xdpctl was attaching; nothing was replaced")
    assert link_prog_name(klab) == FOREIGN_NAME
    assert not state_dir(klab).exists(), tree(klab)  # the attempt's pins went with it


def link_prog_name(klab) -> str:
    fd = libbpf.prog_fd_by_id(attached_prog_id(klab))
    try:
        return libbpf.prog_info(fd).name
    finally:
        os.close(fd)


# --- 2. compare-and-swap --------------------------------------------------------


@needs_foreign
def test_a_swap_before_the_next_command_is_named_and_left_alone(klab):
    klab.xdpctl("attach", klab.iface)
    pins = tree(klab)
    meta = raw_meta(klab)
    theirs = load_foreign(klab, force=True)
    r = klab.xdpctl("attach", klab.iface, "--drop-non-ip", check=False)
    one_line_error(r, 1, f"already carries XDP program {theirs} ({FOREIGN_NAME}), not xdpctl's", "--force")
    r = klab.xdpctl("detach", klab.iface, check=False)
    one_line_error(r, 1, f"XDP program {theirs} ({FOREIGN_NAME})", "it replaced xdpctl's program")
    assert attached_prog_id(klab) == theirs
    (entry,) = klab.xdpctl.json("status")["interfaces"]
    assert entry["managed"] is False and entry["prog_id"] == theirs
    assert tree(klab) == pins and raw_meta(klab) == meta  # xdpctl's state untouched


@needs_foreign
@pytest.mark.parametrize("change", [
    ["attach", "--drop-non-ip"],  # other options: a new program
    ["rule", "add", "drop", "--vlan", "7"],  # a new kind of match: a new program
])
def test_a_swap_while_xdpctl_replaces_its_program_is_caught_by_the_kernel(klab, change):
    """Another tool swaps xdpctl's program out after xdpctl checked it and just
    before xdpctl swaps in its new one: the kernel's compare-and-swap against
    the program xdpctl recorded refuses, and nothing of theirs is touched."""
    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp", "--dport", "53")
    pins, meta = tree(klab), raw_meta(klab)
    argv = [change[0], *change[1:2], klab.iface, *change[2:]] if change[0] == "rule" else \
        [change[0], klab.iface, *change[1:]]
    r = run_with_intruder(klab, argv, ip_load_cmd(klab, force=True))
    one_line_error(r, 1, f"the XDP program on {klab.iface} {CHANGED}", "xdpctl status")
    assert link_prog_name(klab) == FOREIGN_NAME
    # The attempt's new pins (prog_new, a grown layout's maps) are gone; meta is as it was.
    assert tree(klab) == pins and raw_meta(klab) == meta


@needs_foreign
def test_a_swap_while_xdpctl_detaches_is_caught_by_the_kernel(klab):
    klab.xdpctl("attach", klab.iface)
    pins = tree(klab)
    r = run_with_intruder(klab, ["detach", klab.iface], ip_load_cmd(klab, force=True))
    one_line_error(r, 1, f"the XDP program on {klab.iface} {CHANGED}")
    assert link_prog_name(klab) == FOREIGN_NAME
    assert tree(klab) == pins


# --- 3. no gap ------------------------------------------------------------------

SWAPS = 50
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26


def non_ip_tap(klab) -> socket.socket:
    """An AF_PACKET socket on the host end that takes only frames that are not
    IPv4 or IPv6 (a classic BPF filter, so IP frames never reach Python).
    Taps see what XDP passed: anything here got through the filter."""
    s = socket_in(klab.lab.host_netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    insns = [(0x28, 0, 0, 12), (0x15, 2, 0, 0x0800), (0x15, 1, 0, 0x86DD), (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0)]
    prog = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in insns))
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(insns), ctypes.addressof(prog)))
    s.bind((klab.iface, 0))
    s.setblocking(False)
    return s


def drain(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            _, addr = sock.recvfrom(65536)
        except BlockingIOError:
            return n
        n += addr[2] != PACKET_OUTGOING


def ipv4_received(klab) -> int:
    """IPv4 packets that reached the host namespace's stack (Ip: InReceives)."""
    with in_netns(klab.lab.host_netns), open("/proc/thread-self/net/snmp") as f:
        head, values = [line.split() for line in f if line.startswith("Ip:")][:2]
    return int(values[head.index("InReceives")])


def test_fifty_swaps_under_traffic_lose_no_ip_frame_and_pass_no_other(klab):
    """IPv4/UDP and non-IP frames stream from the peer while xdpctl replaces
    its program 50 times (policy allow and deny alternately, so each is a new
    compile; every program passes UDP and drops non-IP). A gap between two
    programs would pass non-IP frames to the stack uncounted; a lost frame
    would be missing from the stack's count and from the counters."""
    lab = klab.lab
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    klab.xdpctl("rule", "add", klab.iface, "pass", "--proto", "udp")
    udp = socket_in(lab.host_netns, socket.AF_INET, socket.SOCK_DGRAM)  # a port to deliver to (never read)
    tap = non_ip_tap(klab)
    try:
        udp.bind((lab.host4, 0))
        ep = lab.endpoints(dport=udp.getsockname()[1])
        ip_frames = [frames.udp_frame(ep, b"no gap %d" % i) for i in range(4)]
        other = frames.build("non-ip", ep)  # ARP, LLDP, 802.3/STP
        assert len(other) == 3
        ids = []
        ip_before = ipv4_received(klab)
        with Stream(klab, ip_frames + other, rate=5000, max_seconds=300) as stream:
            time.sleep(0.3)
            for i in range(SWAPS):
                policy = "deny" if i % 2 == 0 else "allow"
                out = klab.xdpctl("attach", klab.iface, "--drop-non-ip", "--policy", policy).stdout
                assert "replaced xdpctl's program" in out, out
                ids.append(int(out.split("prog ")[1].split()[0]))
            time.sleep(0.3)
        assert stream.error is None, stream.error
        sent = stream.per_frame
        sent_ip = sum(sent[:4])
        assert sent_ip > 0 and all(sent[4:])
        counters = klab.wait_for_total(sum(sent), timeout=10)
        ip_got = ipv4_received(klab) - ip_before
        passed_other = drain(tap)
    finally:
        udp.close()
        tap.close()
    assert len(set(ids)) == SWAPS  # every attach swapped in a program of its own
    zero = {"packets": 0, "bytes": 0}
    assert counters["ipv4/udp"] == verdicts(
        {"pass": {"packets": sent_ip, "bytes": sum(n * len(f) for n, f in zip(sent[:4], ip_frames))}})
    assert counters["arp"] == verdicts({"drop": {"packets": sent[4], "bytes": sent[4] * len(other[0])}})
    assert counters["other"]["pass"] == zero
    assert counters["other"]["drop"]["packets"] == sent[5] + sent[6]
    assert ip_got == sent_ip  # every IP frame reached the stack
    assert passed_other == 0  # no non-IP frame did
    check_consistent(klab)


# --- 4. ABI version ---------------------------------------------------------------


@pytest.mark.parametrize("abi", [1, contract.ABI_VERSION + 1])
def test_state_of_another_abi_version_is_refused_and_left_alone(klab, abi):
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp")
    att = attachment(klab)
    with libbpf.opened(att.pin(contract.PIN_META)) as fd:
        raw = libbpf.map_lookup(fd, b"\0\0\0\0", contract.META.size)
        libbpf.map_update(fd, b"\0\0\0\0", struct.pack("<I", abi) + raw[4:])
    before = local_snapshot(klab)
    pins = tree(klab)
    why = f"written by an xdpctl with state ABI version {abi}; this xdpctl reads version {contract.ABI_VERSION}"
    for args in (["stats", klab.iface], ["attach", klab.iface], ["attach", klab.iface, "--force"],
                 ["detach", klab.iface], ["rule", "add", klab.iface, "drop", "--proto", "tcp"],
                 ["rule", "list", klab.iface]):
        r = klab.xdpctl(*args, check=False)
        one_line_error(r, 1, klab.iface, why, "use the xdpctl that attached it")
    # Reading every interface's counters shows none of it (status says why).
    assert klab.xdpctl.json("stats") == {"interfaces": []}
    status = klab.xdpctl.json("status")
    (entry,) = status["interfaces"]
    assert entry["managed"] is False and entry["prog_id"] == attached_prog_id(klab)
    assert status["stale"] == [{"ifname": klab.iface, "ifindex": entry["ifindex"],
                                "reason": f"state written by xdpctl ABI version {abi} "
                                          f"(this one reads {contract.ABI_VERSION}); left alone"}]
    assert local_snapshot(klab) == before and tree(klab) == pins
