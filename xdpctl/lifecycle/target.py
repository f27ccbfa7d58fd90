"""One interface as xdpctl sees it: the link, its recorded state, and whether
the program on it is xdpctl's.

Ownership is decided here and nowhere else: the interface carries xdpctl's
program only when its attached program id is the one xdpctl recorded for that
(netns, ifindex). A name or an ifindex alone proves nothing. State written
by an xdpctl of another ABI version is never xdpctl's to use: resolve()
refuses it, and it is left as it is.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from ..datapath import contract
from ..kernel import libbpf, privileges
from . import egress, recovery, trace
from ..errors import InterfaceGone, InterfaceNotFound, StateVersion
from ..kernel.netlink import Link
from .state import Attachment


@dataclass
class Target:
    link: Link
    att: Attachment
    meta: contract.Meta | None
    # Its state is mid-change and another xdpctl is changing this namespace's
    # state (it holds its lock): a change in flight, not a leftover
    # (load(wait=False) only).
    in_flight: bool = False

    @property
    def ifname(self) -> str:
        return self.link.ifname

    @property
    def attached_id(self) -> int:
        return self.link.xdp.prog_id if self.link.xdp else 0

    @property
    def other_abi(self) -> bool:
        """The state was written by an xdpctl of another ABI version."""
        return self.meta is not None and self.meta.abi_version != contract.ABI_VERSION

    def refuse_other_abi(self) -> "Target":
        """self, unless its state is another ABI version's (StateVersion)."""
        if self.other_abi:
            raise StateVersion(self.ifname, self.meta.abi_version, contract.ABI_VERSION)
        return self

    @property
    def ours(self) -> bool:
        """The interface carries the program xdpctl recorded for it (or, while
        `xdpctl trace` runs, its traced variant: lifecycle/trace.py)."""
        return (self.meta is not None and not self.other_abi and self.attached_id != 0
                and self.attached_id in (self.meta.prog_id, trace.traced_prog_id(self.att)))

    @property
    def foreign(self) -> bool:
        return self.attached_id != 0 and not self.ours

    @property
    def stale(self) -> bool:
        """xdpctl kept state for this ifindex, but its program is not there."""
        return self.att.exists() and not self.ours


def resolve(app, ifname: str) -> Target:
    """The interface named ifname in xdpctl's namespace.

    If it is gone but xdpctl kept state for it, the state is removed and
    InterfaceGone is raised. State of another ABI version raises StateVersion.
    """
    try:
        link = app.netlink.link(ifname)
    except InterfaceNotFound:
        if forget_gone(app, ifname):
            raise InterfaceGone(ifname) from None
        raise
    return load(app, link).refuse_other_abi()


def load(app, link: Link, wait: bool = True) -> Target:
    """The target for link, settling first what a killed xdpctl left midway.

    State that is mid-change is a killed xdpctl's only while no other one
    is changing this namespace's state (State.looking). wait: wait for the
    lock (and so for a change in flight to end), then settle; else, if a
    change is in flight, return the target as it is, marked in_flight."""
    att = app.state.attachment(app.netns_ino, link.ifindex)
    target = Target(link, att, att.read_meta() if att.exists() else None)
    if target.other_abi:
        return target  # not this xdpctl's to settle (resolve refuses it)
    if recovery.unsettled(att, target.meta) or recovery.leftovers(att, target.meta) \
            or recovery.damaged(app, link, att, target.meta) or egress.unsettled(att, target.meta) \
            or trace.left_behind(att):
        if not wait:
            with app.state.looking(app.netns_ino) as busy:
                if busy:
                    return dataclasses.replace(target, in_flight=True)
        with app.state.lock():
            recovery.recover(app, link, att)  # pending under the lock is a killed xdpctl's
        # The link as it is now: a change may have ended while this waited.
        link = app.netlink.link_by_index(link.ifindex) or link
        target = Target(link, att, att.read_meta() if att.exists() else None)
    return target


def recorded(app) -> list[Target]:
    """A target for every interface of the namespace that xdpctl kept state
    for and that still exists (settled, as load() does)."""
    targets = []
    for att in app.state.attachments(app.netns_ino):
        link = app.netlink.link_by_index(att.ifindex)
        if link is not None:
            targets.append(load(app, link))
    return targets


def _gone(app, ifname: str | None) -> list[tuple]:
    found = []
    for att in app.state.attachments(app.netns_ino):
        if app.netlink.link_by_index(att.ifindex) is not None:
            continue
        meta = att.read_meta()
        name = meta.ifname if meta and meta.abi_version == contract.ABI_VERSION else f"if{att.ifindex}"
        if ifname is None or name == ifname:
            found.append((att, name))
    return found


def forget_gone(app, ifname: str | None = None, wait: bool = True) -> list[str]:
    """Remove state whose interface no longer exists; return those names.
    Looks without the lock first, so read-only commands stay read-only.
    wait=False: leave it for later if another xdpctl holds the lock."""
    if not _gone(app, ifname):
        return []
    with app.state.lock() if wait else app.state.try_lock() as free:
        if free is False:
            return []
        gone = _gone(app, ifname)
        for att, _ in gone:
            att.remove()
    return [name for _, name in gone]


def prog_name(prog_id: int, att: Attachment | None = None) -> str:
    """A program's name: from xdpctl's pin when it is ours, else by id (needs
    CAP_SYS_ADMIN); '?' when the kernel will not say."""
    if att is not None:
        try:
            with libbpf.opened(att.pin(contract.PIN_PROG)) as fd:
                info = libbpf.prog_info(fd)
                if info.id == prog_id:
                    return info.name
        except OSError:
            pass
    if not privileges.can_inspect_foreign():
        return "?"
    try:
        fd = libbpf.prog_fd_by_id(prog_id)
    except OSError:
        return "?"
    try:
        return libbpf.prog_info(fd).name or "?"
    except OSError:
        return "?"
    finally:
        os.close(fd)
