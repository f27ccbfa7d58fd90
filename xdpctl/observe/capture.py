"""`xdpctl trace`: a sampled capture of the frames the filter decided, to pcapng.

The selection (verdicts, classes, the deciding rule, one frame in N per CPU,
the snap length) is written into each interface's trace_cfg and applied in
the program (lifecycle/trace.py swaps the traced program in and out), so
the frames it does not select cost a few instructions, and those it does
not sample, a few more. Records come through a BPF ring buffer, read with
libbpf (no BCC); each becomes a pcapng packet (observe/pcapng.py) whose
comment names the verdict, the deciding rule (or the policy, or
--drop-non-ip) and the class. The report says how many frames were captured,
how many the selection matched, and how many were lost because the ring was
full, so that nobody mistakes a lossy capture for a complete one.

Timestamps are the kernel's (bpf_ktime_get_ns, CLOCK_MONOTONIC), moved to
the epoch by an offset measured once at the start (CLOCK_REALTIME minus
CLOCK_MONOTONIC, read back to back; the tighter of a few tries).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

from .. import __version__
from ..datapath import contract
from ..datapath.program import trace_capacity
from ..errors import BadInput, NotManaged, XdpctlError
from ..kernel import libbpf, privileges
from ..lifecycle import trace as lifecycle_trace
from ..lifecycle.deploy import Current
from ..lifecycle.target import resolve
from . import pcapng

VERDICT_CHOICES = ("any", *contract.VERDICTS)
DEFAULT_SNAPLEN = contract.TRACE_CAP_MAX
POLL_MS = 100
SETTLE_S = 0.05  # after the swap out: the traced program's last frames on other CPUs


def comment(verdict: str, by: str, rule_id: int | None, cls: str) -> str:
    """The comment on every packet: verdict=drop rule=3 class=ipv4/udp (rule=
    policy when no rule decided, drop-non-ip for --drop-non-ip, ? for a rule
    removed while the trace ran)."""
    if by == "rule":
        who = str(rule_id) if rule_id is not None else "?"
    else:
        who = by
    return f"verdict={verdict} rule={who} class={cls}"


@dataclass(frozen=True)
class Selection:
    verdicts: tuple[str, ...] = ("drop",)
    classes: tuple[str, ...] = ()  # () : every class
    rule: str | None = None  # a rule id, "policy", "drop-non-ip" or "ban"; None: any
    sample: int = 1
    snaplen: int = DEFAULT_SNAPLEN

    def verdict_mask(self) -> int:
        if "any" in self.verdicts:
            return (1 << len(contract.VERDICTS)) - 1
        return sum(1 << contract.VERDICTS.index(v) for v in set(self.verdicts))

    def class_mask(self) -> int:
        if not self.classes:
            return (1 << len(contract.CLASSES)) - 1
        mask = 0
        for name in self.classes:
            codes = [code for code, cls in enumerate(contract.CLASSES) if cls == name or cls.startswith(name + "/")]
            if not codes:
                raise BadInput(f"--class {name}: no such class; the classes are {', '.join(contract.CLASSES)} "
                               "(or ipv4, ipv6 for all of a family)")
            mask |= sum(1 << c for c in codes)
        return mask

    def check(self) -> None:
        for v in self.verdicts:
            if v not in VERDICT_CHOICES:
                raise BadInput(f"--verdict {v}: one of {', '.join(VERDICT_CHOICES)}")
        if self.sample < 1:
            raise BadInput(f"--sample {self.sample}: keep one frame in N, N from 1")
        if not 1 <= self.snaplen <= contract.TRACE_CAP_MAX:
            raise BadInput(f"--snaplen {self.snaplen}: 1 to {contract.TRACE_CAP_MAX} bytes (an XDP frame "
                           "without fragments fits a page)")
        self.class_mask()
        if self.rule is not None and self.rule not in ("policy", "drop-non-ip", "ban") and not self.rule.isdigit():
            raise BadInput(f"--rule {self.rule}: a rule id (`xdpctl rule list`), policy, drop-non-ip or ban")

    def describe(self) -> dict:
        return {"verdicts": list(self.verdicts), "classes": list(self.classes) or ["any"],
                "rule": self.rule or "any", "sample": self.sample, "snaplen": self.snaplen}


@dataclass
class Traced:
    """One interface under trace."""

    target: object
    index: int  # its pcapng interface
    rule_ids: dict[int, int]  # hit slot -> rule id
    stats_fd: int = -1
    ring_fd: int = -1
    captured: int = 0
    matched: int = 0
    sampled: int = 0
    lost: int = 0
    restored: bool = False

    def report(self) -> dict:
        return {"interface": self.target.ifname, "captured": self.captured, "matched": self.matched,
                "sampled": self.sampled, "lost": self.lost}


@dataclass
class Report:
    interfaces: list[dict] = field(default_factory=list)
    captured: int = 0
    matched: int = 0
    lost: int = 0
    sampled: int = 0
    ended: str = ""  # count, duration, interrupted, terminated, output-closed
    seconds: float = 0.0
    selection: dict = field(default_factory=dict)
    output: str = ""

    def as_dict(self) -> dict:
        return {"captured": self.captured, "matched": self.matched, "lost": self.lost, "sampled": self.sampled,
                "ended": self.ended, "seconds": round(self.seconds, 3), "output": self.output,
                "selection": self.selection, "interfaces": self.interfaces}


def _slots(target) -> dict[int, int]:
    return {r.slot: r.id for r in Current.read(target).rules}


def _rule_filter(selection: Selection, target, slots: dict[int, int]) -> tuple[int, int]:
    """(deciders mask, slot) for target."""
    every = (1 << len(contract.TRACE_BY)) - 1
    if selection.rule is None:
        return every, contract.TRACE_ANY_SLOT
    if selection.rule == "policy":
        return 1 << contract.TRACE_BY_POLICY, contract.TRACE_ANY_SLOT
    if selection.rule == "drop-non-ip":
        return 1 << contract.TRACE_BY_NON_IP, contract.TRACE_ANY_SLOT
    if selection.rule == "ban":
        return 1 << contract.TRACE_BY_BAN, contract.TRACE_ANY_SLOT
    rule_id = int(selection.rule)
    for slot, rid in slots.items():
        if rid == rule_id:
            return 1 << contract.TRACE_BY_RULE, slot
    raise BadInput(f"--rule {rule_id}: {target.ifname} has no rule {rule_id}; `xdpctl rule list {target.ifname}` "
                   "lists them")


def _epoch_offset() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC in ns, from the tightest of a few back-to-back reads."""
    best = None
    for _ in range(5):
        a = time.monotonic_ns()
        real = time.time_ns()
        b = time.monotonic_ns()
        if best is None or b - a < best[0]:
            best = (b - a, real - (a + b) // 2)
    return best[1]


@contextlib.contextmanager
def _stop_on_signals(stopped: list[str]):
    """Ctrl-C, SIGTERM and SIGHUP end the trace cleanly, with the report: the
    handler only notes why (an exception raised inside a record's handling
    would lose that record, which the ring has already given up)."""
    def stop(signum, _frame):
        stopped.append("interrupted" if signum == signal.SIGINT else "terminated")

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def trace(app, ifnames: list[str], selection: Selection, open_output: Callable[[], BinaryIO], output_name: str, *,
          count: int = 0, duration: float = 0.0, stream: bool = False, on_started=None) -> Report:
    """Trace ifnames until count frames are captured, duration seconds pass,
    or a Ctrl-C (SIGINT, SIGTERM, SIGHUP); the report of what was captured.
    open_output() is called once every interface carries its traced program
    (so that a bad selection leaves an existing file alone)."""
    selection.check()
    if len(set(ifnames)) != len(ifnames):
        raise BadInput("an interface is named twice; name each once")
    privileges.require_attach(f"tracing {', '.join(ifnames)}")
    cap = trace_capacity(selection.snaplen)
    report = Report(selection=selection.describe(), output=output_name)
    traced: list[Traced] = []
    pid, pid_start = os.getpid(), lifecycle_trace.process_start(os.getpid())
    reader = writer = None
    start = time.monotonic()
    try:
        with app.state.lock():
            for index, name in enumerate(ifnames):
                target = resolve(app, name)
                if not target.ours:
                    raise NotManaged(name)
                lifecycle_trace.refuse_if_running(target.att, name, "trace it")
                if target.meta.mode_name == "offload":
                    raise XdpctlError(f"{name}'s program runs offloaded on the NIC, which has no BPF ring "
                                      "buffer: xdpctl traces native and generic programs only")
                slots = _slots(target)
                deciders, slot = _rule_filter(selection, target, slots)
                config = contract.TRACE_CONFIG.pack(selection.verdict_mask(), selection.class_mask(), deciders, slot,
                                                    selection.sample, selection.snaplen, pid, 0, pid_start)
                t = Traced(target, index, slots)
                lifecycle_trace.swap_in(app, target, config, cap)
                traced.append(t)
                t.stats_fd = libbpf.obj_get(target.att.pin(contract.PIN_TRACE_STATS))
                t.ring_fd = libbpf.obj_get(target.att.pin(contract.PIN_TRACE_RING))
        writer = pcapng.Writer(open_output(), f"xdpctl {__version__} trace", flush=stream)
        for t in traced:
            writer.add_interface(t.target.ifname, selection.snaplen, f"xdpctl trace ({t.target.meta.mode_name} XDP)")
        reader = libbpf.RingReader([t.ring_fd for t in traced], _on_record(traced, writer, count))
        start = time.monotonic()
        report.ended = _capture(reader, writer, traced, count, duration, on_started)
    finally:
        try:
            _finish(app, traced, reader, writer, report)
        finally:
            report.seconds = time.monotonic() - start
            if reader is not None:
                reader.close()
    return report


def _on_record(traced: list[Traced], writer: pcapng.Writer, count: int):
    """What to do with each ring record: a pcapng packet, until count."""
    offset = _epoch_offset()
    classes, verdicts, bys = contract.CLASSES, contract.VERDICTS, contract.TRACE_BY
    header = contract.TRACE_RECORD

    def on_record(ring: int, data: bytes) -> None:
        t = traced[ring]
        if count and sum(x.captured for x in traced) >= count:
            return
        ktime, length, caplen, _ifindex, slot, verdict, cls, by, _p0, _p1 = header.unpack_from(data)
        rule_id = None
        if by == contract.TRACE_BY_RULE:
            rule_id = t.rule_ids.get(slot)
            if rule_id is None:  # a rule added while the trace runs: look again
                with contextlib.suppress(Exception):
                    t.rule_ids = _slots(t.target)
                rule_id = t.rule_ids.get(slot)
        note = comment(verdicts[verdict] if verdict < len(verdicts) else str(verdict),
                       bys[by] if by < len(bys) else str(by), rule_id,
                       classes[cls] if cls < len(classes) else str(cls))
        writer.packet(t.index, ktime + offset, data[header.size: header.size + caplen], length, note)
        t.captured += 1

    return on_record


def _capture(reader, writer: pcapng.Writer, traced: list[Traced], count: int, duration: float, on_started) -> str:
    """Read the rings until the trace ends; why it ended."""
    start = time.monotonic()
    stopped: list[str] = []
    with _stop_on_signals(stopped):
        if on_started is not None:
            on_started()
        try:
            while True:
                if stopped:
                    return stopped[0]
                if count and sum(t.captured for t in traced) >= count:
                    return "count"
                wait = POLL_MS
                if duration:
                    left = duration - (time.monotonic() - start)
                    if left <= 0:
                        return "duration"
                    wait = max(1, min(wait, int(left * 1000)))
                if reader.poll(wait):
                    writer.flush()  # a trace killed later leaves a file readable up to here
        except BrokenPipeError:
            return "output-closed"


def _finish(app, traced: list[Traced], reader, writer, report: Report) -> None:
    """Swap every traced program out (Ctrl-C is held meanwhile), read what the
    rings still hold and the counts, and unpin the trace's maps."""
    if not traced:
        return
    with app.state.lock():
        for t in traced:
            link = app.netlink.link_by_index(t.target.link.ifindex)
            t.restored = lifecycle_trace.swap_out(app, link, t.target.att)
    time.sleep(SETTLE_S)
    if reader is not None and writer is not None and report.ended != "output-closed":
        with contextlib.suppress(OSError, BrokenPipeError, KeyboardInterrupt):
            reader.consume()  # what the traced programs wrote before they went
            writer.flush()
    for t in traced:
        with contextlib.suppress(OSError):
            t.matched, t.sampled, t.lost = _stats(t.stats_fd)
        for fd in (t.stats_fd, t.ring_fd):
            if fd >= 0:
                os.close(fd)
    report.interfaces = [t.report() for t in traced]
    report.captured = sum(t.captured for t in traced)
    report.matched = sum(t.matched for t in traced)
    report.sampled = sum(t.sampled for t in traced)
    report.lost = sum(t.lost for t in traced)


def _stats(fd: int) -> tuple[int, int, int]:
    size = contract.TRACE_STATS.size
    raw = libbpf.map_lookup(fd, lifecycle_trace.ZERO, size * libbpf.possible_cpus()) or b""
    totals = [0, 0, 0]
    for cpu in range(len(raw) // size):
        for i, v in enumerate(contract.TRACE_STATS.unpack_from(raw, cpu * size)[:3]):
            totals[i] += v
    return totals[0], totals[1], totals[2]
