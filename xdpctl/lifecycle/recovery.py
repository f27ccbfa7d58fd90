"""Settling a change that a killed xdpctl left midway.

A program swap records the new program as pending in the meta map, pins it as
prog_new, swaps it in (compare-and-swap), records it as the program, and only
then moves the prog_new pin over the old one. Whatever point a SIGKILL hits,
the next xdpctl to hold the state lock finds one of these and settles it:

- pending set, old program still attached: the new one never went in; drop
  its pins (back to the old state);
- pending set, new program attached: swap the old one back in (or, on a first
  attach, detach it), then as above;
- nothing pending, but prog_new is left: the swap was recorded; finish the
  move of the pin (the new state).

A change can also be killed before it records anything as pending (leftovers,
clear_leftovers): a first attach before its meta exists (its directory is
removed), or after it set aside the state of a program no longer attached
(deploy.py renames it to if<N>_stale_<pid> until it succeeds: it is put
back); a change that grows the rule engine's layout after it pinned the new
layout's maps (they are unpinned: meta still records the old layout).

The lock matters: while another xdpctl holds it, pending is its change in
flight, not a leftover.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil

from ..datapath import contract
from ..kernel import libbpf
from ..datapath.layout import Layout

PIN_PROG_NEW = contract.PIN_PROG + "_new"
ASIDE = "_stale_"  # if<N>_stale_<pid>: state a first attach set aside (deploy.py)


def aside_path(att):
    """Where this process sets att's stale state aside while it attaches."""
    return att.path.with_name(f"{att.path.name}{ASIDE}{os.getpid()}")


def is_aside(name: str, of: str | None = None) -> bool:
    """Whether name is state set aside (for the directory named of, or any)."""
    head, sep, pid = name.partition(ASIDE)
    return bool(sep) and pid.isdigit() and head.startswith("if") and head[2:].isdigit() and of in (None, head)


def unsettled(att, meta: contract.Meta | None) -> bool:
    return att.exists() and (
        (meta is not None and meta.pending_prog_id != 0) or os.path.exists(att.pin(PIN_PROG_NEW))
    )


def recover(app, link, att):
    """Settle what a killed change left of att, then clear what it made
    before it recorded anything. The caller holds the state lock. Returns
    the link as it is now (settling may swap its program)."""
    from . import egress

    egress.settle(app, link, att)  # first: settling the XDP side may remove the directory
    meta = att.read_meta() if att.exists() else None
    if unsettled(att, meta):
        settle(app, link, att)
        link = app.netlink.link_by_index(link.ifindex) or link
        meta = att.read_meta() if att.exists() else None
    if leftovers(att, meta):
        clear_leftovers(att)
    return link


def settle(app, link, att) -> None:
    """Bring att back to a consistent state. The caller holds the state lock."""
    meta = att.read_meta()
    new_pin = att.pin(PIN_PROG_NEW)
    attached = link.xdp.prog_id if link.xdp else 0
    if meta is None:
        att.remove()
        return
    if meta.pending_prog_id == 0:
        if os.path.exists(new_pin):  # the swap was recorded: finish the move of the pin
            os.replace(new_pin, att.pin(contract.PIN_PROG))
            drop_unused_pins(att, Layout.unpack(meta.layout))
        return
    if attached == meta.pending_prog_id:
        with libbpf.opened(new_pin) as new_fd:
            if meta.prog_id:
                with libbpf.opened(att.pin(contract.PIN_PROG)) as old_fd:
                    app.netlink.xdp_set(link, old_fd, meta.mode_name, expected_fd=new_fd)
            else:
                app.netlink.xdp_set(link, -1, meta.mode_name, expected_fd=new_fd)
    if meta.prog_id == 0:  # a first attach: nothing to go back to
        att.remove()
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(new_pin)
    drop_unused_pins(att, Layout.unpack(meta.layout))
    att.write_meta(dataclasses.replace(meta, pending_prog_id=0))


def _set_aside(att) -> list:
    """What a first attach set aside for att (deploy.py) and was killed before
    putting back or removing: a live attach holds the lock until it has."""
    try:
        names = os.listdir(att.path.parent)
    except FileNotFoundError:
        return []
    return sorted(att.path.parent / n for n in names if is_aside(n, att.path.name))


def _other_layouts_pins(att, layout: Layout) -> list[str]:
    """Pinned tables and hits maps of layouts other than this one."""
    keep = {layout.pin_tables(), layout.pin_hits()}
    return [pin for pin in att.pins()
            if (pin.startswith(contract.PIN_TABLES + "_") or pin.startswith(contract.PIN_HITS + "_"))
            and pin not in keep]


def _unused_pins(att, layout: Layout) -> list[str]:
    """Pinned maps that the layout meta records does not use."""
    engine_only = [] if layout.engine else [p for p in att.pins() if p in (contract.PIN_CONFIG, contract.PIN_RULES)]
    return _other_layouts_pins(att, layout) + engine_only


def _unpin(att, pins: list[str]) -> None:
    for pin in pins:
        with contextlib.suppress(OSError):
            os.unlink(att.pin(pin))


def leftovers(att, meta: contract.Meta | None) -> bool:
    """A change killed before it recorded anything as pending left something."""
    if _set_aside(att):
        return True
    if not att.exists():
        return False
    if meta is None:
        return True
    return meta.pending_prog_id == 0 and bool(_unused_pins(att, Layout.unpack(meta.layout)))


def clear_leftovers(att) -> None:
    """Remove what a killed change made before it recorded anything, and put
    back what a killed first attach set aside. The caller holds the lock and
    has settled att first (settle)."""
    aside = _set_aside(att)
    meta = att.read_meta() if att.exists() else None
    if att.exists() and meta is None:
        att.remove()
    keep = None if att.exists() or not aside else aside[-1]
    for path in aside:
        if path != keep:
            shutil.rmtree(path, ignore_errors=True)
    if keep is not None:
        os.rename(keep, att.path)
    elif meta is not None:
        _unpin(att, _unused_pins(att, Layout.unpack(meta.layout)))


def drop_unused_pins(att, layout: Layout) -> None:
    """Unpin tables and hits maps of layouts the program no longer uses."""
    _unpin(att, _other_layouts_pins(att, layout))
