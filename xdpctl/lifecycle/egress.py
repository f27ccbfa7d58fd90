"""The egress side of --established: the flow table and its settings, and the
TC egress program that fills the table, brought and taken away with the XDP
program's changes, all or nothing.

The first --established rule on an interface makes deploy.py compile an XDP
program with the flow lookup (the layout's ESTABLISHED kind). Around it, a
Change of this module:

1. checks, before anything changes, that TC can take the program: a clsact
   qdisc, or none (an older `ingress` qdisc at ffff: leaves no place, and is
   not xdpctl's to replace), and not an offloaded XDP program;
2. creates the flow table (an LRU hash of the interface's size) and its
   settings at their pins, before either program is compiled, so that both
   open the same maps;
3. compiles the egress program (bpf/egress_kern.c), and, once the new XDP
   program is recorded as pending, records the egress program as pending in
   the `egress` pin (what it is about to add: the filter's priority and
   handle, and whether it makes the qdisc), makes the clsact qdisc if there
   is none, and adds a direct-action bpf filter on egress at the lowest
   priority no other filter holds;
4. only then is the XDP program swapped in: replies to flows opened from
   this moment on are known to it. If the swap fails, the filter (and a
   qdisc this change made) go again and the record is put back: nothing
   changed. Once the swap is recorded, so is the egress program.

The last --established rule removed compiles an XDP program without the
lookup; once it is in, the filter, the qdisc if xdpctl made it and nothing
else holds a filter, and the table go (the settings stay for next time).

What on TC is xdpctl's is exactly what the record names: the bpf filter at
(prio, handle) on egress that runs the recorded program. A filter, or a
qdisc, anyone else made is never touched. A kill at any step is settled
(settle(), from recovery.recover) to the old state or the new, as the XDP
side is: a change still pending goes back, a recorded one is kept.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from .. import faults
from ..datapath import contract
from ..datapath.flow_table import DEFAULT_SETTINGS, EgressRecord, FlowSettings
from ..datapath.layout import Layout
from ..errors import BadInput, XdpctlError
from ..kernel import libbpf
from ..kernel.netlink import TC_INGRESS, TcUnavailable

HANDLE = 1
PRIO_MAX = 0xFFFF
_KEY0 = b"\0\0\0\0"


def wanted(layout: Layout) -> bool:
    """Whether a program of this layout needs the egress side."""
    return bool(layout.kinds & contract.KIND_ESTABLISHED)


# --- records on bpffs ---------------------------------------------------------------


def _pin(directory, name: str) -> str:
    return os.path.join(str(directory), name)


def _read(directory, pin: str, size: int) -> bytes | None:
    try:
        with libbpf.opened(_pin(directory, pin)) as fd:
            return libbpf.map_lookup(fd, _KEY0, size)
    except FileNotFoundError:
        return None


def _write(directory, pin: str, name: str, value: bytes) -> None:
    """Write key 0 of the array at pin, creating and pinning it if it is not there."""
    path = _pin(directory, pin)
    try:
        fd = libbpf.obj_get(path)
    except FileNotFoundError:
        fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, name, 4, len(value), 1)
        try:
            libbpf.map_update(fd, _KEY0, value)
            libbpf.obj_pin(fd, path)
        finally:
            os.close(fd)
        return
    try:
        libbpf.map_update(fd, _KEY0, value)
    finally:
        os.close(fd)


def _unpin(directory, *pins: str) -> None:
    for pin in pins:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_pin(directory, pin))


def read_record(directory) -> EgressRecord | None:
    raw = _read(directory, contract.PIN_EGRESS, contract.EGRESS.size)
    return EgressRecord.unpack(raw) if raw else None


def _write_record(directory, record: EgressRecord) -> None:
    _write(directory, contract.PIN_EGRESS, "xdpctl_egress", record.pack())


def read_settings(directory) -> FlowSettings:
    """The interface's flow settings, or the defaults when none were set."""
    raw = _read(directory, contract.PIN_FLOW_CONFIG, contract.FLOW_CONFIG.size)
    return FlowSettings.unpack(raw) if raw else DEFAULT_SETTINGS


def write_settings(directory, settings: FlowSettings) -> None:
    """Set the timeouts (and the size the next table gets): both programs read
    them on the next frame; nothing is recompiled."""
    _write(directory, contract.PIN_FLOW_CONFIG, "xdpctl_flow_cfg", settings.pack())


def has_table(directory) -> bool:
    return os.path.exists(_pin(directory, contract.PIN_FLOWS))


def ensure_table(directory, settings: FlowSettings) -> None:
    """The flow table and its settings at their pins (made if missing)."""
    if not os.path.exists(_pin(directory, contract.PIN_FLOW_CONFIG)):
        write_settings(directory, settings)
    if not has_table(directory):
        fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_LRU_HASH, "xdpctl_flows", contract.FLOW_KEY.size,
                               contract.FLOW.size, settings.entries)
        try:
            libbpf.obj_pin(fd, _pin(directory, contract.PIN_FLOWS))
        finally:
            os.close(fd)


# --- the filter ----------------------------------------------------------------------


def _ours(filters, record: EgressRecord, ids) -> list:
    ids = {i for i in ids if i}
    return [f for f in filters if f.kind == "bpf" and (f.prio, f.handle) == (record.prio, record.handle)
            and f.prog_id in ids]


def attached(app, link, record: EgressRecord | None) -> bool:
    """Whether the filter the record names is on the interface, running its program."""
    if record is None or not record.prog_id or link is None:
        return False
    return bool(_ours(app.netlink.tc_filters(link), record, {record.prog_id}))


def _take_off(app, link, record: EgressRecord, ids) -> None:
    """Remove xdpctl's filter (running one of ids), then the clsact qdisc if
    xdpctl made it and no filter at all is left in it."""
    nl = app.netlink
    for f in _ours(nl.tc_filters(link), record, ids):
        nl.egress_filter_del(link, f.prio, f.handle)
    if record.own_qdisc and nl.tc_qdisc_kind(link) == "clsact" \
            and not nl.tc_filters(link) and not nl.tc_filters(link, TC_INGRESS):
        nl.clsact_del(link)


def release(app, link, directory) -> None:
    """Take the egress side away: xdpctl's filter (and qdisc) off the
    interface, and the table's and program's pins. The settings stay. link
    None: the interface is gone, and its filters with it."""
    record = read_record(directory)
    if record is not None and link is not None:
        _take_off(app, link, record, {record.prog_id, record.pending_prog_id})
    _unpin(directory, contract.PIN_EGRESS_PROG, contract.PIN_FLOWS, contract.PIN_EGRESS)


def release_path(app, path) -> None:
    """release() for an attachment directory about to be removed (clean):
    its interface, when it still exists, is found by the directory's name
    (if<ifindex>, or if<ifindex>_stale_<pid>)."""
    path = Path(path)
    head = path.name.partition("_stale_")[0]
    if path.parent.name != f"ns{app.netns_ino}" or not head.startswith("if") or not head[2:].isdigit():
        return  # another namespace's: gone, and its interfaces with it
    if read_record(path) is None:
        return
    release(app, app.netlink.link_by_index(int(head[2:])), path)


# --- settling what a killed change left ------------------------------------------------------


def _wanted_after_settling(meta) -> bool:
    """Whether the XDP side, once recovery has settled it, has the lookup:
    meta records the layout it settles to (a pending change goes back to the
    recorded one), but a first attach still pending goes entirely."""
    return meta is not None and wanted(Layout.unpack(meta.layout)) and not (
        meta.pending_prog_id and not meta.prog_id)


def unsettled(att, meta) -> bool:
    """A change of the egress side that a killed xdpctl left midway, or an
    egress side the XDP side no longer has."""
    if not att.exists():
        return False
    record = read_record(att.path)
    if record is not None and record.pending_prog_id:
        return True
    if _wanted_after_settling(meta):
        return False
    return (record is not None and bool(record.prog_id)) or has_table(att.path)


def settle(app, link, att) -> None:
    """Bring the egress side in line with the XDP side's settled state. Runs
    first in recovery.recover, before the XDP side is settled (which may
    remove the whole directory). The caller holds the state lock."""
    if not unsettled(att, att.read_meta() if att.exists() else None):
        return
    meta = att.read_meta()
    record = read_record(att.path)
    if record is not None and record.pending_prog_id:
        recorded = meta is not None and not meta.pending_prog_id  # the XDP change stands
        if recorded and link is not None and _ours(app.netlink.tc_filters(link), record, {record.pending_prog_id}):
            _write_record(att.path, EgressRecord(record.pending_prog_id, 0, record.prio, record.handle,
                                                 record.flags, int(time.time())))
        else:
            if link is not None:
                _take_off(app, link, record, {record.pending_prog_id})
            _unpin(att.path, contract.PIN_EGRESS_PROG)
            if record.prog_id:
                _write_record(att.path, EgressRecord(record.prog_id, 0, record.prio, record.handle, record.flags,
                                                     record.attached_at))
            else:
                _unpin(att.path, contract.PIN_EGRESS)
    if not _wanted_after_settling(meta):
        release(app, link, att.path)


# --- one change -----------------------------------------------------------------------------


class Change:
    """The egress side of one deploy: deploy.py calls each step at its place
    (check, prepare, load, attach, commit, finish; undo when the change
    fails before its commit point; close always)."""

    def __init__(self, app, target, old_layout: Layout, new_layout: Layout, mode: str):
        self.app, self.target, self.mode = app, target, mode
        self.want, self.had = wanted(new_layout), wanted(old_layout)
        self.loaded = None
        self.before: EgressRecord | None = None
        self.record: EgressRecord | None = None
        self.added = False
        self.made_qdisc = False
        self.attaching = False

    @property
    def directory(self) -> Path:
        return self.target.att.path

    def check(self) -> None:
        """Refuse, before anything changes, what TC cannot do here."""
        if not self.want:
            return
        ifname = self.target.ifname
        if self.mode == "offload":
            raise BadInput(f"--established needs the flow table in the host's memory, which an offloaded XDP "
                           f"program cannot reach; attach {ifname} in native or generic mode")
        self.before = read_record(self.directory) if self.target.ours else None
        self.attaching = not (self.had and attached(self.app, self.target.link, self.before))
        if self.attaching:
            kind = self.app.netlink.tc_qdisc_kind(self.target.link)
            if kind not in (None, "clsact"):
                raise TcUnavailable(
                    f"{ifname} has an {kind!r} qdisc where --established needs a clsact qdisc for its egress "
                    f"program (both sit at ffff:), and xdpctl does not replace what it did not make; "
                    f"`tc qdisc del dev {ifname} {kind}` frees the place, if nothing needs it")

    def prepare(self) -> None:
        """The table and settings, before the XDP program is compiled against them."""
        if self.want:
            ensure_table(self.directory, read_settings(self.directory))

    def load(self) -> None:
        if self.attaching:
            from ..datapath.program import egress_program
            from ..kernel.compiler import compile_and_load

            self.loaded = compile_and_load(egress_program(str(self.directory)))

    def attach(self) -> None:
        """Record, then add the filter (and the qdisc): before the XDP swap."""
        if not self.attaching:
            return
        nl, link = self.app.netlink, self.target.link
        kind = nl.tc_qdisc_kind(link)
        if kind not in (None, "clsact"):  # made meanwhile by someone else
            raise TcUnavailable(f"{self.target.ifname} now has an {kind!r} qdisc where the clsact qdisc goes; "
                                "nothing was changed")
        used = {f.prio for f in nl.tc_filters(link)}
        prio = next((p for p in range(1, PRIO_MAX + 1) if p not in used), None)
        if prio is None:
            raise XdpctlError(f"every TC priority on the egress of {self.target.ifname} is taken; nothing was changed")
        prog_id = libbpf.prog_info(self.loaded.prog_fd).id
        before = self.before if self.before is not None and not self.before.pending_prog_id else None
        self.record = EgressRecord(before.prog_id if before else 0, prog_id, prio, HANDLE,
                                   contract.EGRESS_OWN_QDISC if kind is None else 0)
        _unpin(self.directory, contract.PIN_EGRESS_PROG)  # the program of a filter that vanished
        libbpf.obj_pin(self.loaded.prog_fd, _pin(self.directory, contract.PIN_EGRESS_PROG))
        _write_record(self.directory, self.record)
        faults.point("egress-recorded")
        if kind is None:
            nl.clsact_add(link)
            self.made_qdisc = True
            faults.point("egress-qdisc")
        nl.egress_filter_add(link, self.loaded.prog_fd, prio, HANDLE, contract.EGRESS_PROG_NAME)
        self.added = True
        faults.point("egress-attached")

    def commit(self) -> None:
        """The XDP swap is recorded: so is the egress program."""
        if self.attaching and self.record is not None:
            r = self.record
            _write_record(self.directory, EgressRecord(r.pending_prog_id, 0, r.prio, r.handle, r.flags,
                                                       int(time.time())))

    def finish(self) -> None:
        """After the change: the last --established rule took the egress side with it."""
        if self.had and not self.want:
            release(self.app, self.target.link, self.directory)

    def undo(self) -> None:
        """The change failed before its commit point: take back what it added."""
        if self.record is None:
            return
        with contextlib.suppress(XdpctlError, OSError):
            _take_off(self.app, self.target.link, self.record, {self.record.pending_prog_id})
        with contextlib.suppress(OSError):
            _unpin(self.directory, contract.PIN_EGRESS_PROG)
            if self.before is not None:
                _write_record(self.directory, self.before)
            else:
                _unpin(self.directory, contract.PIN_EGRESS)

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.close()
            self.loaded = None


# --- the settings ------------------------------------------------------------------------------


def settings_for(target, timeouts: dict[str, int] | None, entries: int | None) -> FlowSettings | None:
    """The settings target gets when timeouts and entries are given (None
    when neither is, or nothing would change). The size is fixed once a table
    exists: changing it is refused, before anything changes."""
    if timeouts is None and entries is None:
        return None
    directory = target.att.path
    current = read_settings(directory) if target.ours else DEFAULT_SETTINGS
    new = current.with_timeouts(timeouts or {})
    if entries is not None and entries != current.entries:
        if target.ours and has_table(directory):
            raise BadInput(f"the flow table of {target.ifname} was made for {current.entries:,} flows, and its "
                           f"size is fixed once it is made; it goes with the last --established rule (or "
                           f"`xdpctl detach {target.ifname}`), and the next one is made at the size set then")
        from dataclasses import replace

        new = replace(new, entries=entries)
    return None if new == current and target.ours and os.path.exists(
        _pin(directory, contract.PIN_FLOW_CONFIG)) else new


# --- putting back a filter someone removed ----------------------------------------------


def missing(app, target) -> bool:
    """xdpctl's program has the lookup, but its egress filter is not on the
    interface (someone removed it): no new flow is recorded."""
    if not target.ours or not wanted(Layout.unpack(target.meta.layout)):
        return False
    return not attached(app, target.link, read_record(target.att.path))


def restore(app, target) -> bool:
    """Put the egress filter back (from the pinned program, or compiled
    anew). True when it was missing. The caller holds the state lock."""
    if not missing(app, target):
        return False
    change = Change(app, target, Layout(), Layout.unpack(target.meta.layout), target.meta.mode_name)
    try:
        change.check()
        change.prepare()
        change.load()
        change.attach()
        change.commit()
    except BaseException:
        change.undo()
        raise
    finally:
        change.close()
    return True
