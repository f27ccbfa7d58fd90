"""clean: remove what a crash or a vanished interface or namespace left of
xdpctl's state, and nothing else.

Only xdpctl's own directory on bpffs is looked at. A program on an interface
is never touched unless xdpctl's state proves it is xdpctl's own half-made
change (recovery.recover); a foreign program, even one named like xdpctl's,
stays where it is.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass

from ..kernel import privileges
from . import egress, recovery
from ..errors import MissingCapability

@dataclass
class Leftover:
    path: str
    what: str
    action: str  # "remove" or "settle"

    def as_dict(self) -> dict:
        return asdict(self)


def live_namespaces(proc: str = "/proc", named: str = "/var/run/netns") -> tuple[set[int], bool]:
    """Inodes of every network namespace a process or a name holds, and
    whether the view is complete: every process could be looked at, save
    init, which some sandboxes hide and which lives in the initial namespace."""
    inos, complete = set(), True
    for pid in os.listdir(proc):
        if pid.isdigit():
            try:
                inos.add(os.stat(f"{proc}/{pid}/ns/net").st_ino)
            except FileNotFoundError:
                pass  # it exited meanwhile
            except OSError:
                complete = complete and pid == "1"
    try:
        for name in os.listdir(named):
            try:
                inos.add(os.stat(os.path.join(named, name)).st_ino)
            except OSError:
                complete = False
    except FileNotFoundError:
        pass
    return inos, complete


def _here(app) -> list[Leftover]:
    found = []
    for att in app.state.attachments(app.netns_ino):
        meta = att.read_meta()
        name = meta.ifname if meta else f"ifindex {att.ifindex}"
        link = app.netlink.link_by_index(att.ifindex)
        path = str(att.path)
        if link is None:
            found.append(Leftover(path, f"state of {name}: the interface is gone", "remove"))
        elif recovery.unsettled(att, meta) or egress.unsettled(att, meta):
            found.append(Leftover(path, f"{link.ifname}: a change interrupted midway", "settle"))
        elif meta is None:
            found.append(Leftover(path, f"{link.ifname}: state of an attach that never finished", "remove"))
        elif not link.xdp or link.xdp.prog_id != meta.prog_id:
            there = f"program {link.xdp.prog_id} (not xdpctl's) is attached" if link.xdp else "no program is attached"
            found.append(Leftover(path, f"state of {link.ifname}: {there}", "remove"))
    ns_dir = app.state.root / f"ns{app.netns_ino}"
    if ns_dir.is_dir():
        for entry in sorted(os.listdir(ns_dir)):
            if recovery.is_aside(entry):
                found.append(Leftover(str(ns_dir / entry), "state set aside by an attach that was killed", "remove"))
    return found


def _elsewhere(app) -> tuple[list[Leftover], list[str]]:
    try:
        entries = sorted(os.listdir(app.state.root))
    except FileNotFoundError:
        return [], []
    live, complete = live_namespaces()
    found, notes = [], []
    for entry in entries:
        if not (entry.startswith("ns") and entry[2:].isdigit()) or int(entry[2:]) == app.netns_ino:
            continue
        path = app.state.root / entry
        if int(entry[2:]) in live:
            if any(os.scandir(path)):
                notes.append(f"{path}: another network namespace's state; `xdpctl --netns NAME clean` looks at it")
            continue
        if not complete:
            notes.append(f"{path}: its namespace looks gone, but not every process could be looked at; left alone")
            continue
        found.append(Leftover(str(path), "state of a network namespace that no longer exists", "remove"))
    return found, notes


def find(app) -> tuple[list[Leftover], list[str]]:
    privileges.require_bpf("looking for xdpctl's leftover state")
    try:
        elsewhere, notes = _elsewhere(app)
        return _here(app) + elsewhere, notes
    except PermissionError as exc:
        raise MissingCapability(f"reading {app.state.root}", "root") from exc


def clean(app, dry_run: bool = False) -> tuple[list[Leftover], list[str]]:
    """What was (or, with dry_run, would be) cleaned, and notes on what was left."""
    if dry_run:
        return find(app)
    privileges.require_attach("cleaning xdpctl's leftover state", loads=False)
    with app.state.lock():
        found, notes = find(app)
        for item in found:
            if item.action == "settle":
                att = next(a for a in app.state.attachments(app.netns_ino) if str(a.path) == item.path)
                recovery.recover(app, app.netlink.link_by_index(att.ifindex), att)
            else:
                egress.release_path(app, item.path)  # first its TC filter, on an interface still there
                shutil.rmtree(item.path, ignore_errors=True)
    return found, notes
