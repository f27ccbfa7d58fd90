"""`xdpctl trace` on the machine: the traced program, in only while a trace runs.

The program that filters when no trace runs has no capture path (not even a
branch): a trace compiles the same variant with -D XDPCTL_TRACE (the compile
cache makes the second time cheap) against the same pinned maps, so counters,
rules and hits go on as they were, and swaps it in (compare-and-swap against
xdpctl's program); when the trace ends it swaps the program pinned as `prog`
back (compare-and-swap against the traced one) and unpins the trace's maps.
meta is never changed: it records the program that filters.

While a trace runs, the attachment holds, beside its usual pins:

    trace_cfg     struct xdpctl_trace_config: the selection, and the trace's
                  owner (pid and start time) and traced program id
    trace_stats   per-CPU counts: matched, sampled, lost
    trace_ring    the ring buffer of records
    trace_prog    the traced program

trace_cfg is pinned first and removed last: it is the mark that a trace
runs. A trace killed with SIGKILL leaves it with an owner that is gone; the
next xdpctl that holds the state lock for the interface (any command that
changes it, `clean`) puts the program back (settle) before anything else.
A live trace is refused by a second one on the same interface, by changes
that would swap the program (deploy.py) and by detach, in one line each;
changes to rules that need no new program go on during a trace.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass

from ..datapath import contract
from ..datapath.program import FilterOptions, filter_program
from ..datapath.layout import Layout
from ..errors import KernelError, ProgramChanged, XdpctlError
from ..kernel import libbpf
from . import signals

TRACE_PINS = (contract.PIN_TRACE_PROG, contract.PIN_TRACE_RING, contract.PIN_TRACE_STATS)
ZERO = struct.pack("<I", 0)


class TraceRunning(XdpctlError):
    """Another trace, or a change that needs the traced interface's program."""


@dataclass(frozen=True)
class Owner:
    pid: int
    pid_start: int
    prog_id: int  # the traced program (0 until it is loaded)


def process_start(pid: int) -> int:
    """The start time of pid (clock ticks since boot; /proc/<pid>/stat field
    22), or 0 when there is no such process: with the pid, it names a process
    even after its pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def owner(att) -> Owner | None:
    """Who runs the trace recorded in att (None: no trace there)."""
    try:
        with libbpf.opened(att.pin(contract.PIN_TRACE_CONFIG)) as fd:
            raw = libbpf.map_lookup(fd, ZERO, contract.TRACE_CONFIG.size)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if raw is None:
        return None
    fields = contract.TRACE_CONFIG.unpack(raw)
    return Owner(pid=fields[6], prog_id=fields[7], pid_start=fields[8])


def alive(who: Owner) -> bool:
    return who.pid != 0 and process_start(who.pid) == who.pid_start


def traced_prog_id(att) -> int:
    """The traced program's id while a trace runs on att, else 0."""
    who = owner(att) if att.exists() else None
    return who.prog_id if who is not None else 0


def left_behind(att) -> bool:
    """A trace whose xdpctl is gone (SIGKILL) left its mark: settle() undoes it."""
    who = owner(att) if att.exists() else None
    return who is not None and not alive(who)


def refuse_if_running(att, ifname: str, doing: str) -> None:
    """TraceRunning when a live trace holds att's program."""
    who = owner(att) if att.exists() else None
    if who is not None and alive(who):
        raise TraceRunning(f"a trace runs on {ifname} (xdpctl process {who.pid}); {doing} once it ends "
                           f"(Ctrl-C in the trace, or `kill {who.pid}`)")


# --- setting a trace up and down --------------------------------------------------


def _pin_new_map(path: str, map_type: int, name: str, key_size: int, value_size: int, entries: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a killed trace's, settled already: never reused
    fd = libbpf.map_create(map_type, name, key_size, value_size, entries)
    try:
        libbpf.obj_pin(fd, path)
    finally:
        os.close(fd)


def prepare_maps(directory: str, config: bytes) -> None:
    """Make and pin the trace maps in directory, trace_cfg (holding config)
    first: from then on the trace is marked (and settled if killed)."""
    cfg = os.path.join(directory, contract.PIN_TRACE_CONFIG)
    _pin_new_map(cfg, libbpf.BPF_MAP_TYPE_ARRAY, "xdpctl_tcfg", 4, contract.TRACE_CONFIG.size, 1)
    with libbpf.opened(cfg) as fd:
        libbpf.map_update(fd, ZERO, config)
    _pin_new_map(os.path.join(directory, contract.PIN_TRACE_STATS), libbpf.BPF_MAP_TYPE_PERCPU_ARRAY,
                 "xdpctl_tstats", 4, contract.TRACE_STATS.size, 1)
    _pin_new_map(os.path.join(directory, contract.PIN_TRACE_RING), libbpf.BPF_MAP_TYPE_RINGBUF,
                 "xdpctl_tring", 0, 0, contract.TRACE_RING_BYTES)


def remove_maps(directory: str) -> None:
    """Unpin the trace's maps and program, trace_cfg (the mark) last."""
    for pin in (*TRACE_PINS, contract.PIN_TRACE_CONFIG):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, pin))


def set_owner_prog(att, prog_id: int) -> None:
    path = att.pin(contract.PIN_TRACE_CONFIG)
    with libbpf.opened(path) as fd:
        fields = list(contract.TRACE_CONFIG.unpack(libbpf.map_lookup(fd, ZERO, contract.TRACE_CONFIG.size)))
        fields[7] = prog_id
        libbpf.map_update(fd, ZERO, contract.TRACE_CONFIG.pack(*fields))


def swap_in(app, target, config: bytes, cap: int) -> int:
    """Put the traced variant of target's program on it; returns its id.
    The caller holds the state lock; on failure nothing is left."""
    from ..kernel.compiler import compile_and_load

    att, meta = target.att, target.meta
    refuse_if_running(att, target.ifname, "trace it")
    prepare_maps(str(att.path), config)
    loaded = None
    try:
        layout = Layout.unpack(meta.layout)
        loaded = compile_and_load(filter_program(FilterOptions.from_bits(meta.options), str(att.path), layout, cap))
        prog_id = libbpf.prog_info(loaded.prog_fd).id
        set_owner_prog(att, prog_id)
        libbpf.obj_pin(loaded.prog_fd, att.pin(contract.PIN_TRACE_PROG))
        with signals.held(), libbpf.opened(att.pin(contract.PIN_PROG)) as old_fd:
            app.netlink.xdp_set(target.link, loaded.prog_fd, meta.mode_name, expected_fd=old_fd)
        return prog_id
    except BaseException:
        remove_maps(str(att.path))
        raise
    finally:
        if loaded is not None:
            loaded.close()


def swap_out(app, link, att) -> bool:
    """Put xdpctl's program back in place of the traced one and unpin the
    trace's maps. False when the traced program was no longer attached
    (something else replaced it; that is left alone). Caller holds the lock."""
    who = owner(att)
    attached = link.xdp.prog_id if link is not None and link.xdp else 0
    restored = False
    meta = att.read_meta()
    with signals.held():
        if who is not None and who.prog_id and attached == who.prog_id and meta is not None:
            try:
                with libbpf.opened(att.pin(contract.PIN_TRACE_PROG)) as traced, \
                        libbpf.opened(att.pin(contract.PIN_PROG)) as plain:
                    app.netlink.xdp_set(link, plain, meta.mode_name, expected_fd=traced)
                restored = True
            except FileNotFoundError as exc:
                raise KernelError(f"xdpctl's program pin for {link.ifname} is gone; `xdpctl clean` "
                                  "repairs what it can") from exc
            except ProgramChanged:
                pass  # replaced meanwhile: not ours to undo
        remove_maps(str(att.path))
    return restored


def settle(app, link, att) -> None:
    """Undo a trace whose xdpctl was killed. The caller holds the lock."""
    if left_behind(att):
        swap_out(app, link, att)

