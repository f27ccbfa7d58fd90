"""xdpctl trace on a live lab: rules and frames of known counts, each
selection written to pcapng and read back by tshark (the oracle for what the
file holds), with exact frames, bytes and comments; the end report's counts;
the capture path present only while a trace runs; Ctrl-C, SIGKILL, a second
trace and a change that needs a new program.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from conftest import attached_prog_id
from xdpctl.datapath import contract
from xdpctl.kernel import libbpf

pytestmark = pytest.mark.kernel
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None,
                                  reason="tshark is not installed (scripts/setup.sh installs Debian's)")
START_TIMEOUT_S = 400  # a compile in an emulated VM (the kernel matrix) takes minutes


def udp(lab, dport: int, size: int) -> bytes:
    f = Ether(src=lab.peer_mac, dst=lab.host_mac) / IP(src=lab.peer4, dst=lab.host4) / UDP(sport=4000, dport=dport)
    return bytes(f / Raw(b"u" * (size - len(f))))


def tcp(lab, dport: int, size: int) -> bytes:
    f = Ether(src=lab.peer_mac, dst=lab.host_mac) / IP(src=lab.peer4, dst=lab.host4) / TCP(dport=dport, flags="S")
    return bytes(f / Raw(b"t" * (size - len(f))))


def arp(lab) -> bytes:
    return bytes(Ether(src=lab.peer_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=lab.peer4, pdst=lab.host4,
                                                                      hwsrc=lab.peer_mac))


class Trace:
    """An `xdpctl trace` process in the lab's host namespace."""

    def __init__(self, klab, *args: str, stdout=subprocess.PIPE):
        cmd = [sys.executable, "-m", "xdpctl", "--netns", klab.lab.host_netns, "trace", klab.iface, *args]
        self.proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, cwd="/")
        self.err = b""

    def started(self) -> None:
        """Wait for its "tracing ..." line: the traced program is in."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"tracing " not in self.err:
            left = deadline - time.monotonic()
            assert left > 0 and self.proc.poll() is None, f"trace did not start: {self.err.decode()}"
            ready, _, _ = select.select([self.proc.stderr], [], [], min(left, 1.0))
            if ready:
                self.err += os.read(self.proc.stderr.fileno(), 4096)

    def end(self, sig=signal.SIGINT, timeout: float = 120) -> tuple[int, str, str]:
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, (out or b"").decode(), (self.err + err).decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def tshark_rows(path: str, times: list | None = None) -> list[tuple[int, int, str]]:
    """(frame length, captured length, comment) of each packet, by tshark;
    times, if given, gets each packet's timestamp (seconds since the epoch)."""
    out = subprocess.run(["tshark", "-r", path, "-T", "fields", "-E", "separator=|", "-e", "frame.time_epoch",
                          "-e", "frame.len", "-e", "frame.cap_len", "-e", "frame.comment"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rows = []
    for line in out.splitlines():
        epoch, length, caplen, note = line.split("|", 3)
        rows.append((int(length), int(caplen), note))
        if times is not None:
            times.append(float(epoch))
    return rows


def has_ringbuf(prog_id: int) -> bool:
    fd = libbpf.prog_fd_by_id(prog_id)
    try:
        for map_id in libbpf.prog_info(fd).map_ids:
            mfd = libbpf.map_fd_by_id(map_id)
            try:
                if libbpf.map_info(mfd).type == libbpf.BPF_MAP_TYPE_RINGBUF:
                    return True
            finally:
                os.close(mfd)
        return False
    finally:
        os.close(fd)


def trace_pins(klab) -> list[str]:
    from conftest import netns_ino
    from xdpctl.lifecycle.state import STATE_ROOT

    root = f"{STATE_ROOT}/ns{netns_ino(klab.lab.host_netns)}"
    return sorted(p for d in os.listdir(root) for p in os.listdir(f"{root}/{d}") if p.startswith("trace"))


def rules_lab(klab) -> dict:
    """Rule 1 drops UDP to 9999, rule 2 TCP to 80; the policy passes the rest."""
    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp", "--dport", "9999")
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "tcp", "--dport", "80")
    lab = klab.lab
    return {
        "rule1": [udp(lab, 9999, n) for n in (60, 61, 62)],
        "rule2": [tcp(lab, 80, 70)],
        "policy-udp": [udp(lab, 53, n) for n in (80, 81)],
        "arp": [arp(lab), arp(lab)],
    }


def traced(klab, frames: list[bytes], *args: str, tmp_path) -> tuple[list, dict]:
    """Trace with args while frames are sent; the rows tshark reads and the
    --json report."""
    import json

    path = str(tmp_path / f"t{time.monotonic_ns()}.pcapng")
    t = Trace(klab, "-w", path, "--json", *args)
    try:
        t.started()
        before = attached_prog_id(klab)
        sent_from = time.time()
        klab.send(frames)
        sent_until = time.time()
        klab.wait_for_total(0, timeout=0.3)  # frames are decided in softirq, a moment after the send
        code, out, err = t.end()
    finally:
        t.kill()
    assert code == 0, err
    assert attached_prog_id(klab) != before  # the plain program is back
    times: list[float] = []
    rows = tshark_rows(path, times)
    # The kernel's timestamps, on the epoch: within the send (and the clocks' read, 10 ms)
    assert all(sent_from - 0.01 <= t <= sent_until + 0.01 for t in times), (sent_from, times, sent_until)
    assert times == sorted(times)
    return rows, json.loads(out)


def default_selection(klab, tmp_path) -> tuple[dict, list[bytes]]:
    """The default selection, what was dropped, by either rule, in the order
    sent; the plain program back after it. The lab's frames sets, and all of them."""
    sets = rules_lab(klab)
    plain = attached_prog_id(klab)
    assert not has_ringbuf(plain)  # no trace running: no capture path in the program
    frames = sets["rule1"] + sets["rule2"] + sets["policy-udp"] + sets["arp"]
    rows, report = traced(klab, frames, tmp_path=tmp_path)
    assert rows == [(60, 60, "verdict=drop rule=1 class=ipv4/udp"), (61, 61, "verdict=drop rule=1 class=ipv4/udp"),
                    (62, 62, "verdict=drop rule=1 class=ipv4/udp"), (70, 70, "verdict=drop rule=2 class=ipv4/tcp")]
    assert (report["captured"], report["matched"], report["lost"]) == (4, 4, 0)
    assert attached_prog_id(klab) == plain and not has_ringbuf(plain) and trace_pins(klab) == []
    return sets, frames


@pytest.mark.matrix
@needs_tshark
def test_the_default_selection_captures_exactly_the_drops(klab, tmp_path):
    """On every kernel of the matrix: one trace (each tshark run costs minutes
    in an emulated guest; the other selections are the same program)."""
    default_selection(klab, tmp_path)
    c = klab.counters()
    assert c["ipv4/udp"]["drop"]["packets"] == 3 and c["arp"]["pass"]["packets"] == 2


@needs_tshark
def test_each_selection_captures_exactly_what_it_selects(klab, tmp_path):
    _, frames = default_selection(klab, tmp_path)

    # Every verdict, one rule; the policy's passes of one class; a family.
    rows, report = traced(klab, frames, "--verdict", "any", "--rule", "2", tmp_path=tmp_path)
    assert rows == [(70, 70, "verdict=drop rule=2 class=ipv4/tcp")] and report["matched"] == 1
    rows, report = traced(klab, frames, "--verdict", "pass", "--class", "arp", tmp_path=tmp_path)
    assert rows == [(42, 42, "verdict=pass rule=policy class=arp")] * 2
    assert (report["captured"], report["matched"], report["lost"]) == (2, 2, 0)
    rows, _ = traced(klab, frames, "--verdict", "any", "--rule", "policy", "--class", "ipv4", tmp_path=tmp_path)
    assert rows == [(80, 80, "verdict=pass rule=policy class=ipv4/udp"), (81, 81, "verdict=pass rule=policy class=ipv4/udp")]
    # The counters counted every frame, traced or not.
    c = klab.counters()
    assert c["ipv4/udp"]["drop"]["packets"] == 4 * 3 and c["arp"]["pass"]["packets"] == 4 * 2
    assert trace_pins(klab) == []


@needs_tshark
def test_a_frame_the_ban_list_dropped_is_named_ban(klab, tmp_path):
    """--over 1/h --burst 1 --block 1h: the first frame is within the rate
    (passed), the second goes over (rule 1 drops it and bans the source), the
    rest are the ban's; --rule ban selects only those."""
    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "drop", "--over", "1/h", "--burst", "1", "--block", "1h",
                "--proto", "udp")
    frames = [udp(klab.lab, 53, n) for n in (60, 61, 62, 63)]
    rows, report = traced(klab, frames, "--verdict", "any", tmp_path=tmp_path)
    assert rows == [(60, 60, "verdict=pass rule=policy class=ipv4/udp"), (61, 61, "verdict=drop rule=1 class=ipv4/udp"),
                    (62, 62, "verdict=drop rule=ban class=ipv4/udp"), (63, 63, "verdict=drop rule=ban class=ipv4/udp")]
    assert (report["captured"], report["matched"]) == (4, 4)
    rows, report = traced(klab, frames[:2], "--rule", "ban", tmp_path=tmp_path)
    assert rows == [(60, 60, "verdict=drop rule=ban class=ipv4/udp"), (61, 61, "verdict=drop rule=ban class=ipv4/udp")]
    (ban,) = klab.xdpctl.json("ban", "list", klab.iface)["bans"]
    assert ban["packets"] == 2 + 2


@needs_tshark
def test_sample_and_snaplen(klab, tmp_path):
    sets = rules_lab(klab)
    frames = [udp(klab.lab, 9999, 100 + i) for i in range(9)]
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # one CPU sends, so one CPU's sampling decides: frames 1, 4, 7
    try:
        rows, report = traced(klab, frames, "--sample", "3", "--snaplen", "50", tmp_path=tmp_path)
    finally:
        os.sched_setaffinity(0, before)
    assert rows == [(100 + i, 50, "verdict=drop rule=1 class=ipv4/udp") for i in (0, 3, 6)]
    assert (report["captured"], report["matched"], report["sampled"], report["lost"]) == (3, 9, 3, 0)
    assert sets  # the lab's rules were in place


@needs_tshark
def test_stdout_into_tshark(klab):
    rules_lab(klab)
    frames = [udp(klab.lab, 9999, 60 + i) for i in range(3)]
    cmd = (f"{sys.executable} -m xdpctl --netns {klab.lab.host_netns} trace {klab.iface} --rule 1 --count 3 -w - "
           "| tshark -r - -T fields -e frame.len -e frame.comment")
    p = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    t = Trace.__new__(Trace)
    t.proc, t.err = p, b""
    try:
        t.started()
        klab.send(frames)
        code, out, err = t.end(sig=None)
    finally:
        t.kill()
    assert code == 0, err
    assert out.splitlines() == [f"{60 + i}\tverdict=drop rule=1 class=ipv4/udp" for i in range(3)]
    assert "3 frames captured, 3 matched the selection, 0 lost" in err


def test_a_full_ring_reports_its_losses(klab, tmp_path):
    """The reader stopped (SIGSTOP) while more frames come than the ring holds:
    the report counts what was lost, and captured + lost is what matched."""
    rules_lab(klab)
    path = str(tmp_path / "full.pcapng")
    t = Trace(klab, "-w", path, "--json", "--rule", "1")
    try:
        t.started()
        t.proc.send_signal(signal.SIGSTOP)
        sent = klab.send([udp(klab.lab, 9999, 100)], count=4000)  # records of 4 KiB: the 8 MiB ring holds ~2,000
        t.proc.send_signal(signal.SIGCONT)
        code, out, err = t.end()
    finally:
        t.kill()
    import json

    report = json.loads(out)
    assert code == 0, err
    assert report["matched"] == sent[("ipv4/udp", "packets")] == 4000
    assert report["lost"] > 0 and report["captured"] + report["lost"] == 4000
    if shutil.which("tshark"):
        assert len(tshark_rows(path)) == report["captured"]


def test_sigkill_leaves_the_filter_as_it_was(klab, tmp_path):
    rules_lab(klab)
    plain = attached_prog_id(klab)
    t = Trace(klab, "-w", str(tmp_path / "k.pcapng"))
    try:
        t.started()
        traced_id = attached_prog_id(klab)
        assert traced_id != plain and has_ringbuf(traced_id)
        (entry,) = [e for e in klab.xdpctl.json("status")["interfaces"] if e["ifname"] == klab.iface]
        assert entry["managed"] and entry["trace"] == {"pid": t.proc.pid, "prog_id": traced_id}
        # Meanwhile: a second trace is refused in one line; so are a change that
        # needs a new program, and detach; a rule that fits the tables is added.
        second = klab.xdpctl("trace", klab.iface, "-w", str(tmp_path / "2.pcapng"), check=False)
        assert second.returncode == 1 and second.stderr.startswith("xdpctl: error: a trace runs on")
        assert len(second.stderr.strip().splitlines()) == 1
        swap = klab.xdpctl("rule", "add", klab.iface, "drop", "--src-mac", "02:00:00:00:00:99", check=False)
        assert swap.returncode == 1 and "a trace runs on" in swap.stderr
        assert klab.xdpctl("detach", klab.iface, check=False).returncode == 1
        klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp", "--dport", "7")
        assert attached_prog_id(klab) == traced_id
    finally:
        t.kill()  # SIGKILL: nothing of the trace runs its end
    assert attached_prog_id(klab) == traced_id and trace_pins(klab)
    cleaned = klab.xdpctl.json("clean")
    assert [(item["action"], "a trace that was killed" in item["what"]) for item in cleaned["leftovers"]] == \
        [("settle", True)]
    assert attached_prog_id(klab) == plain and not has_ringbuf(plain)
    assert trace_pins(klab) == []
    # The filter filters as before, with the rule added meanwhile.
    sent = klab.send([udp(klab.lab, 7, 64), udp(klab.lab, 9999, 64)])
    c = klab.wait_for_total(2)
    assert c["ipv4/udp"]["drop"]["packets"] == sent[("ipv4/udp", "packets")] == 2


def test_ctrl_c_ends_it_with_the_report(klab, tmp_path):
    rules_lab(klab)
    plain = attached_prog_id(klab)
    t = Trace(klab, "-w", str(tmp_path / "c.pcapng"))
    try:
        t.started()
        klab.send([udp(klab.lab, 9999, 64)] * 2)
        klab.wait_for_total(2)
        code, _out, err = t.end(signal.SIGINT)
    finally:
        t.kill()
    assert code == 0, err
    assert "2 frames captured, 2 matched the selection, 0 lost (ring full)" in err and "(interrupted)" in err
    assert attached_prog_id(klab) == plain and trace_pins(klab) == []


def test_the_next_command_settles_a_killed_trace(klab, tmp_path):
    rules_lab(klab)
    plain = attached_prog_id(klab)
    t = Trace(klab, "-w", str(tmp_path / "n.pcapng"))
    try:
        t.started()
    finally:
        t.kill()
    klab.xdpctl("rule", "add", klab.iface, "drop", "--src-mac", "02:00:00:00:00:99")  # needs a new program
    assert trace_pins(klab) == [] and not has_ringbuf(attached_prog_id(klab))
    assert attached_prog_id(klab) != plain  # the rule's new program, put in place of the plain one


def test_bad_selections_change_nothing(klab, tmp_path):
    rules_lab(klab)
    plain = attached_prog_id(klab)
    for args, words in [(("--rule", "42"), "has no rule 42"), (("--class", "ipv5"), "no such class"),
                        (("--rule", "x"), "a rule id")]:
        p = klab.xdpctl("trace", klab.iface, "-w", str(tmp_path / "b.pcapng"), *args, check=False)
        assert p.returncode == 2 and words in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert attached_prog_id(klab) == plain and trace_pins(klab) == []


def test_the_exporter_keeps_a_traced_interface(klab, tmp_path):
    """In the exporter's own namespace a scrape checks the attached program
    against meta; while a trace runs that is the traced program (meta keeps
    the plain one), and the interface must stay in the metrics."""
    from xdpctl.kernel import netlink
    from xdpctl.lifecycle.state import Attachment, STATE_ROOT
    from xdpctl.observe import scrape
    from conftest import netns_ino
    from pathlib import Path

    rules_lab(klab)
    plain = attached_prog_id(klab)
    with netlink.Netlink(namespace=klab.lab.host_netns) as nl:
        ifindex = nl.link(klab.iface).ifindex
    att = Attachment(Path(STATE_ROOT), netns_ino(klab.lab.host_netns), ifindex)

    def reading(prog_id: int):
        live = {ifindex: scrape.Live(klab.iface, prog_id, "native")}  # as netlink says in its namespace
        return scrape.read_attachment(att, "lab", live, rules=True)

    assert reading(plain).prog_id == plain
    t = Trace(klab, "-w", str(tmp_path / "e.pcapng"))
    try:
        t.started()
        traced = attached_prog_id(klab)
        assert traced != plain
        got = reading(traced)
        assert got is not None and got.prog_id == traced and [r.rule_id for r in got.rules] == [1, 2]
        assert reading(traced + 100000) is None  # a program xdpctl does not know still drops out
        code, _out, err = t.end(signal.SIGINT)
    finally:
        t.kill()
    assert code == 0, err
    assert reading(traced) is None and reading(plain).prog_id == plain  # the trace over
