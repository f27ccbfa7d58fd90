"""Settling a change that a killed xdpctl left midway.

A program swap records the new program as pending in the meta map, pins it as
prog_new, swaps it in (compare-and-swap), records it as the program, and only
then moves the prog_new pin over the old one. A swap that also changes the
rules (a new policy with new rules, say) has written them into the inactive
generation before, and pins config_flip: the config before the change and
after it. It flips the generation right after the swap, before it records
anything: the new program must never go on deciding with the old rules, nor
the old one with the new. Whatever point a SIGKILL hits, the next xdpctl to
hold the state lock finds one of these and settles it:

- pending set, old program still attached: the new one never went in; drop
  its pins (back to the old state);
- pending set, new program attached: swap the old one back in (or, on a first
  attach, detach it), put the config back as config_flip recorded it before
  the change, then as above (the old state: old program, old rules);
- nothing pending, but prog_new or config_flip is left: the swap was
  recorded; make the config what config_flip recorded after the change, and
  finish the move of the pin (the new state: new program, new rules).
  (config_flip is pinned only once pending is set, and removed last, so it
  is never left with nothing pending before the swap.)

A change can also be killed before it records anything as pending (leftovers,
clear_leftovers): a first attach before its meta exists (its directory is
removed), or after it set aside the state of a program no longer attached
(deploy.py renames it to if<N>_stale_<pid> until it succeeds: it is put
back); a change that grows the rule engine's layout after it pinned the new
layout's maps (they are unpinned: meta still records the old layout).

State can also be damaged: a pin removed behind xdpctl's back (rm, a tool
cleaning bpffs) while its program stays attached. The program still holds
every map it uses, and meta records which program that is, so the missing
pins are pinned again from it (repair): the same maps, counts and rules
included. If meta itself is gone, the attached program's own meta map (the
program holds it too) proves it xdpctl's when it records that very program
on this interface in this namespace.

The lock matters: while another xdpctl holds it, pending is its change in
flight, not a leftover.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import struct

from ..datapath import contract
from ..kernel import libbpf
from ..datapath.layout import Layout
from ..errors import MissingCapability
from ..rules import engine
from . import signals

PIN_PROG_NEW = contract.PIN_PROG + "_new"
# During a swap that also flips the rule generation: an array of two configs
# (struct xdpctl_config), [0] before the change and [1] after it.
PIN_FLIP = contract.PIN_CONFIG + "_flip"
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
        or os.path.exists(att.pin(PIN_FLIP))
    )


def record_flip(att, before: bytes, after: bytes) -> None:
    """Pin config_flip: the config before a change and after it."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(att.pin(PIN_FLIP))
    fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, "xdpctl_flip", 4, contract.CONFIG.size, 2)
    try:
        libbpf.map_update(fd, struct.pack("<I", 0), before)
        libbpf.map_update(fd, struct.pack("<I", 1), after)
        libbpf.obj_pin(fd, att.pin(PIN_FLIP))
    finally:
        os.close(fd)


def _flip(att) -> tuple[bytes, bytes] | None:
    """(config before, config after) as config_flip recorded them, if it is there."""
    try:
        with libbpf.opened(att.pin(PIN_FLIP)) as fd:
            return tuple(libbpf.map_lookup(fd, struct.pack("<I", i), contract.CONFIG.size) for i in (0, 1))
    except FileNotFoundError:
        return None


def _config_to(att, flip: tuple[bytes, bytes] | None, which: int) -> None:
    """Make the config what config_flip recorded (0: before, 1: after)."""
    if flip is None or flip[which] is None:
        return
    path = att.pin(contract.PIN_CONFIG)
    if os.path.exists(path) and engine.read_config_raw(path) != flip[which]:
        engine.store_config(path, flip[which])


def forget_flip(att) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(att.pin(PIN_FLIP))


def recover(app, link, att):
    """Settle what a killed change left of att, pin again what was unpinned
    behind xdpctl's back, then clear what a killed change made before it
    recorded anything. The caller holds the state lock. Returns the link as
    it is now (settling may swap its program)."""
    from . import egress, trace

    trace.settle(app, link, att)  # a killed trace's program out first: what follows sees xdpctl's own
    link = app.netlink.link_by_index(link.ifindex) or link
    egress.settle(app, link, att)  # first: settling the XDP side may remove the directory
    meta = att.read_meta() if att.exists() else None
    if unsettled(att, meta):
        settle(app, link, att)
        link = app.netlink.link_by_index(link.ifindex) or link
        meta = att.read_meta() if att.exists() else None
    missing = damaged(app, link, att, meta)
    if missing and len(lost(link, missing)) < len(missing):
        repair(app, link, att)
        meta = att.read_meta() if att.exists() else None
    if leftovers(att, meta):
        clear_leftovers(att)
    return link


# --- damaged state ---------------------------------------------------------------


def expected_pins(meta: contract.Meta) -> list[str]:
    """The pins an attachment has, by what its meta records."""
    pins = [contract.PIN_PROG, contract.PIN_META, contract.PIN_COUNTERS]
    layout = Layout.unpack(meta.layout)
    if layout.engine:
        pins += [contract.PIN_CONFIG, contract.PIN_RULES, layout.pin_tables(), layout.pin_hits()]
    if layout.actions & contract.FEAT_LIMITS:
        pins += [layout.pin_limits(), layout.pin_limit_stats(), layout.pin_buckets()]
    if layout.actions & contract.FEAT_BANS:
        pins.append(contract.PIN_BANS)
    return pins


def _program_fd(prog_id: int, what: str) -> int:
    try:
        return libbpf.prog_fd_by_id(prog_id)
    except PermissionError:
        raise MissingCapability(what, "CAP_SYS_ADMIN") from None


def _maps_of(prog_fd: int, what: str) -> dict[str, int]:
    """The program's maps by their kernel name (xdpctl_<pin>): fds the caller closes."""
    out = {}
    for map_id in libbpf.prog_info(prog_fd).map_ids:
        try:
            fd = libbpf.map_fd_by_id(map_id)
        except PermissionError:
            for other in out.values():
                os.close(other)
            raise MissingCapability(what, "CAP_SYS_ADMIN") from None
        except FileNotFoundError:
            continue
        name = libbpf.map_info(fd).name
        if name in out:
            os.close(fd)
        else:
            out[name] = fd
    return out


def _programs_meta(app, link) -> contract.Meta | None:
    """The meta the attached program itself holds, if it proves the program
    xdpctl's: this ABI, recording that very program (nothing pending) on
    this ifindex in this namespace."""
    prog_id = link.xdp.prog_id if link.xdp else 0
    if not prog_id:
        return None
    what = f"looking at the program on {link.ifname} (xdpctl's meta pin is missing)"
    try:
        prog_fd = _program_fd(prog_id, what)
    except FileNotFoundError:
        return None
    try:
        maps = _maps_of(prog_fd, what)
    finally:
        os.close(prog_fd)
    try:
        fd = maps.get("xdpctl_" + contract.PIN_META)
        raw = libbpf.map_lookup(fd, b"\0\0\0\0", libbpf.map_info(fd).value_size) if fd is not None else None
    finally:
        for fd in maps.values():
            os.close(fd)
    if raw is None:
        return None
    if len(raw) < contract.META.size:
        return None
    meta = contract.Meta.unpack(raw[: contract.META.size])
    own = (meta.abi_version == contract.ABI_VERSION and meta.prog_id == prog_id and not meta.pending_prog_id
           and meta.ifindex == link.ifindex and meta.netns_ino == app.netns_ino)
    return meta if own else None


def damaged(app, link, att, meta: contract.Meta | None) -> list[str]:
    """The pins missing from the state of xdpctl's program on link (which is
    still attached): what repair() puts back. [] when nothing is missing, or
    when the state is not of the program attached (then it is stale)."""
    if link is None or not link.xdp or not att.exists():
        return []
    if meta is None:  # meta unpinned, or a first attach that never recorded it
        if os.path.exists(att.pin(contract.PIN_META)):
            return []
        meta = _programs_meta(app, link)
        if meta is None:
            return []
        present = set(att.pins()) | {contract.PIN_META}
        return [contract.PIN_META] + [p for p in expected_pins(meta) if p not in present]
    if (meta.abi_version != contract.ABI_VERSION or meta.pending_prog_id
            or meta.prog_id != link.xdp.prog_id):
        return []
    present = set(att.pins())
    return [p for p in expected_pins(meta) if p not in present]


def _kernel_name(pin: str) -> str:
    """The kernel's name of the map behind a pin (xdpctl_<name>)."""
    layout_pin = pin.startswith(LAYOUT_PINS)
    return "xdpctl_" + (pin.rsplit("_", 1)[0] if layout_pin else pin)


def lost(link, missing: list[str]) -> list[str]:
    """Those of the missing pins that the attached program does not hold (a
    map only user space reads, of a program an older xdpctl or a kernel
    before 5.10 loaded): they cannot be pinned again."""
    if not missing:
        return []
    what = f"looking at the program on {link.ifname} ({describe_damage(missing)})"
    prog_fd = _program_fd(link.xdp.prog_id, what)
    try:
        maps = _maps_of(prog_fd, what)
    finally:
        os.close(prog_fd)
    for fd in maps.values():
        os.close(fd)
    return [p for p in missing if p != contract.PIN_PROG and _kernel_name(p) not in maps]


def describe_damage(missing: list[str]) -> str:
    if len(missing) == 1:
        return f"its {missing[0]} pin is missing"
    return f"its {', '.join(missing[:-1])} and {missing[-1]} pins are missing"


def repair(app, link, att) -> None:
    """Pin again what is missing, from the attached program: it holds every
    map it uses. The caller holds the state lock."""
    meta = att.read_meta()
    missing = damaged(app, link, att, meta)
    if not missing:
        return
    what = f"repairing xdpctl's state for {link.ifname} ({describe_damage(missing)})"
    prog_fd = _program_fd(link.xdp.prog_id, what)
    try:
        maps = _maps_of(prog_fd, what)
        try:
            for pin in missing:
                fd = prog_fd if pin == contract.PIN_PROG else maps.get(_kernel_name(pin))
                if fd is not None:  # else lost(): clean removes such state
                    libbpf.obj_pin(fd, att.pin(pin))
        finally:
            for fd in maps.values():
                os.close(fd)
    finally:
        os.close(prog_fd)


def settle(app, link, att) -> None:
    """Bring att back to a consistent state. The caller holds the state lock."""
    with signals.held():  # a Ctrl-C must not cut a settling in two either
        _settle(app, link, att)


def _settle(app, link, att) -> None:
    meta = att.read_meta()
    new_pin = att.pin(PIN_PROG_NEW)
    attached = link.xdp.prog_id if link.xdp else 0
    if meta is None:
        att.remove()
        return
    flip = _flip(att)
    if meta.pending_prog_id == 0:  # the swap was recorded: finish it
        _config_to(att, flip, 1)
        if os.path.exists(new_pin):
            os.replace(new_pin, att.pin(contract.PIN_PROG))
        forget_flip(att)
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
    _config_to(att, flip, 0)  # the old program's rules, if the change had flipped to the new ones
    with contextlib.suppress(FileNotFoundError):
        os.unlink(new_pin)
    forget_flip(att)
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


# Pins named <name>_<layout tag or slots>: a layout of their own each.
LAYOUT_PINS = (contract.PIN_TABLES + "_", contract.PIN_HITS + "_", contract.PIN_LIMITS + "_",
               contract.PIN_LIMIT_STATS + "_", contract.PIN_BUCKETS + "_")


def _other_layouts_pins(att, layout: Layout) -> list[str]:
    """Pinned tables, hits (and limits) maps of layouts other than this one."""
    keep = {layout.pin_tables(), layout.pin_hits(), layout.pin_limits(), layout.pin_limit_stats(),
            layout.pin_buckets()}
    return [pin for pin in att.pins() if pin.startswith(LAYOUT_PINS) and pin not in keep]


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
