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

The lock matters: while another xdpctl holds it, pending is its change in
flight, not a leftover.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

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


def drop_unused_pins(att, layout: Layout) -> None:
    """Unpin tables and hits maps of layouts the program no longer uses."""
    keep = {layout.pin_tables(), layout.pin_hits()}
    for pin in att.pins():
        if (pin.startswith(contract.PIN_TABLES + "_") or pin.startswith(contract.PIN_HITS + "_")) and pin not in keep:
            with contextlib.suppress(OSError):
                os.unlink(att.pin(pin))
