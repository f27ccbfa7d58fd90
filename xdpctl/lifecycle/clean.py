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
from . import egress, namespaces, recovery, trace
from ..errors import MissingCapability

@dataclass
class Leftover:
    path: str
    what: str
    action: str  # "remove", "settle" or "repair"

    def as_dict(self) -> dict:
        return asdict(self)


GONE = ": the interface is gone"
IN_FLIGHT = ("another xdpctl is changing this namespace's state (it holds its lock): a change in flight, "
             "or one a killed xdpctl left; look again when it is done")


def _here(app, busy: bool) -> tuple[list[Leftover], list[str]]:
    """Leftovers in this namespace. busy: another xdpctl is changing its
    state, so what looks mid-change may be its change in flight: said in a
    note, not taken for a leftover (the interface being gone is a leftover
    either way)."""
    found, notes = _look_here(app)
    if not busy:
        return found, notes
    sure = [f for f in found if f.what.endswith(GONE)]
    return sure, notes + [f"{f.path}: {f.what}: {IN_FLIGHT}" for f in found if f not in sure]



def _look_here(app) -> tuple[list[Leftover], list[str]]:
    found: list[Leftover] = []
    for att in app.state.attachments(app.netns_ino):
        meta = att.read_meta()
        name = meta.ifname if meta else f"ifindex {att.ifindex}"
        link = app.netlink.link_by_index(att.ifindex)
        path = str(att.path)
        if link is None:
            found.append(Leftover(path, f"state of {name}{GONE}", "remove"))
        elif recovery.unsettled(att, meta) or egress.unsettled(att, meta):
            found.append(Leftover(path, f"{link.ifname}: a change interrupted midway", "settle"))
        elif missing := recovery.damaged(app, link, att, meta):
            damage = recovery.describe_damage(missing)
            if recovery.lost(link, missing):
                found.append(Leftover(path, f"{link.ifname}: damaged beyond repair: {damage}, and its program "
                                            "does not hold that map; the program stays, no longer managed",
                                      "remove"))
            else:
                found.append(Leftover(path, f"{link.ifname}: damaged state: {damage}", "repair"))
        elif meta is None:
            found.append(Leftover(path, f"{link.ifname}: state of an attach that never finished", "remove"))
        elif trace.left_behind(att):
            found.append(Leftover(path, f"{link.ifname}: the traced program of a trace that was killed", "settle"))
        elif not link.xdp or link.xdp.prog_id not in (meta.prog_id, trace.traced_prog_id(att)):
            there = f"program {link.xdp.prog_id} (not xdpctl's) is attached" if link.xdp else "no program is attached"
            found.append(Leftover(path, f"state of {link.ifname}: {there}", "remove"))
    ns_dir = app.state.root / f"ns{app.netns_ino}"
    if ns_dir.is_dir():
        for entry in sorted(os.listdir(ns_dir)):
            if recovery.is_aside(entry):
                found.append(Leftover(str(ns_dir / entry), "state set aside by an attach that was killed", "remove"))
    return found, []


def _elsewhere(app) -> tuple[list[Leftover], list[str]]:
    """The state of namespaces the kernel says are gone (namespaces.py)."""
    try:
        entries = sorted(os.listdir(app.state.root))
    except FileNotFoundError:
        return [], []
    found, notes = [], []
    for entry in entries:
        if not (entry.startswith("ns") and entry[2:].isdigit()) or int(entry[2:]) == app.netns_ino:
            continue
        path = app.state.root / entry
        lives = namespaces.lives(path, int(entry[2:]))
        if lives:
            notes.append(f"{path}: another network namespace's state; `xdpctl --netns NAME clean` looks at it")
        elif lives is None:
            notes.append(f"{path}: another network namespace's state, which this kernel cannot say is alive "
                         "or gone (no namespace handle: Linux before 6.18, or state of an older xdpctl); left "
                         f"alone: `xdpctl --netns NAME clean` in it, or `rm -r {path}` once it is gone")
        else:
            found.append(Leftover(str(path), "state of a network namespace that no longer exists", "remove"))
    return found, notes


def find(app) -> tuple[list[Leftover], list[str]]:
    """Leftovers, and notes on what is left alone. No change starts in this
    namespace while it looks, unless one was in flight already (State.looking)."""
    privileges.require_bpf("looking for xdpctl's leftover state")
    try:
        with app.state.looking(app.netns_ino) as busy:
            here, notes = _here(app, busy)
            elsewhere, more = _elsewhere(app)
        return here + elsewhere, notes + more
    except PermissionError as exc:
        raise MissingCapability(f"reading {app.state.root}", "root") from exc


def clean(app, dry_run: bool = False) -> tuple[list[Leftover], list[str]]:
    """What was (or, with dry_run, would be) cleaned, and notes on what was left."""
    if dry_run:
        return find(app)
    privileges.require_attach("cleaning xdpctl's leftover state", loads=False)
    with app.state.lock():
        for att in app.state.attachments(app.netns_ino):  # state an older xdpctl made here
            namespaces.record(att)
        found, notes = find(app)
        for item in found:
            if item.action in ("settle", "repair"):
                att = next(a for a in app.state.attachments(app.netns_ino) if str(a.path) == item.path)
                recovery.recover(app, app.netlink.link_by_index(att.ifindex), att)
            else:
                egress.release_path(app, item.path)  # first its TC filter, on an interface still there
                shutil.rmtree(item.path, ignore_errors=True)
    return found, notes
