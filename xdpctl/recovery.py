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

from . import contract, libbpf
from .layout import Layout

PIN_PROG_NEW = contract.PIN_PROG + "_new"


def unsettled(att, meta: contract.Meta | None) -> bool:
    return att.exists() and (
        (meta is not None and meta.pending_prog_id != 0) or os.path.exists(att.pin(PIN_PROG_NEW))
    )


def settle(app, link, att) -> str:
    """Bring att back to a consistent state; say what was done ("" if nothing).
    The caller holds the state lock."""
    meta = att.read_meta()
    new_pin = att.pin(PIN_PROG_NEW)
    attached = link.xdp.prog_id if link.xdp else 0
    if meta is None:
        att.remove()
        return "removed the state of an attach that was interrupted before it began"
    if meta.pending_prog_id == 0:
        if not os.path.exists(new_pin):
            return ""
        os.replace(new_pin, att.pin(contract.PIN_PROG))
        drop_unused_pins(att, Layout.unpack(meta.layout))
        return "finished a change that was interrupted after it took effect"
    if attached == meta.pending_prog_id:
        with libbpf.opened(new_pin) as new_fd:
            if meta.prog_id:
                with libbpf.opened(att.pin(contract.PIN_PROG)) as old_fd:
                    app.netlink.xdp_set(link, old_fd, meta.mode_name, expected_fd=new_fd)
            else:
                app.netlink.xdp_set(link, -1, meta.mode_name, expected_fd=new_fd)
    if meta.prog_id == 0:
        att.remove()
        return "undid an attach that was interrupted midway"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(new_pin)
    drop_unused_pins(att, Layout.unpack(meta.layout))
    att.write_meta(dataclasses.replace(meta, pending_prog_id=0))
    return "undid a change that was interrupted midway; the previous program and rules are in place"


def _set_aside(att) -> list:
    """What a first attach set aside for att (deploy.py) and was killed before
    putting back or removing: a live attach holds the lock until it has."""
    prefix = att.path.name + "_stale_"
    try:
        names = os.listdir(att.path.parent)
    except FileNotFoundError:
        return []
    return sorted(att.path.parent / n for n in names if n.startswith(prefix) and n[len(prefix):].isdigit())


def _unused_pins(att, layout: Layout) -> list[str]:
    """Pinned maps that the layout meta records does not use."""
    keep = {layout.pin_tables(), layout.pin_hits()}
    engine_only = {contract.PIN_CONFIG, contract.PIN_RULES}
    return [pin for pin in att.pins()
            if ((pin.startswith(contract.PIN_TABLES + "_") or pin.startswith(contract.PIN_HITS + "_"))
                and pin not in keep) or (pin in engine_only and not layout.engine)]


def leftovers(att, meta: contract.Meta | None) -> bool:
    """A change killed before it recorded anything as pending left something."""
    if _set_aside(att):
        return True
    if not att.exists():
        return False
    if meta is None:
        return True
    return meta.pending_prog_id == 0 and bool(_unused_pins(att, Layout.unpack(meta.layout)))


def clear_leftovers(att) -> str:
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
        return "put back the state that an interrupted attach had set aside"
    if meta is not None:
        for pin in _unused_pins(att, Layout.unpack(meta.layout)):
            with contextlib.suppress(OSError):
                os.unlink(att.pin(pin))
        return "removed the maps of a change that was interrupted before it took effect"
    return "removed the state of an attach that was interrupted before it began"


def drop_unused_pins(att, layout: Layout) -> None:
    """Unpin tables and hits maps of layouts the program no longer uses."""
    keep = {layout.pin_tables(), layout.pin_hits()}
    for pin in att.pins():
        if (pin.startswith(contract.PIN_TABLES + "_") or pin.startswith(contract.PIN_HITS + "_")) and pin not in keep:
            with contextlib.suppress(OSError):
                os.unlink(att.pin(pin))
