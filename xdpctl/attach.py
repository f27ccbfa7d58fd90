"""attach: compile the filter, load it, and attach it, all or nothing.

A fresh attach uses the kernel's no-replace flag. Re-attaching to an interface
xdpctl manages swaps the program atomically with the kernel's replace flag and
the expected old program (compare-and-swap), reusing the pinned maps, so
counters are kept and no frame goes unfiltered. A foreign program is replaced
only with --force. Any failure removes what this call created.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field

from . import contract, libbpf, privileges
from .errors import ForeignProgram, KernelError, ModeError
from .netlink import AlreadyAttached
from .program import FilterOptions, filter_program
from .target import Target, prog_name, resolve

MODES = tuple(contract.MODES)


@dataclass
class AttachResult:
    ifname: str
    ifindex: int
    mode: str
    prog_id: int
    replaced: str  # "", "own" or "foreign"
    options: FilterOptions
    notes: list[str] = field(default_factory=list)


def _check_mode(target: Target, mode: str, force: bool) -> None:
    xdp = target.link.xdp
    if target.ours and target.meta.mode_name != mode:
        raise ModeError(
            f"xdpctl's program on {target.ifname} runs in {target.meta.mode_name} mode; "
            f"`xdpctl detach {target.ifname}` first to attach in {mode} mode"
        )
    if xdp and force and xdp.mode != mode:
        raise ModeError(
            f"{target.ifname} carries a {xdp.mode} XDP program; replacing it in {mode} mode would "
            "mix modes on one interface. Use --mode " + xdp.mode
        )


def _arp_note(app, target: Target, options: FilterOptions) -> list[str]:
    if not options.drop_non_ip:
        return []
    addrs = app.netlink.ipv4_addresses(target.link.ifindex)
    if not addrs:
        return []
    return [
        f"warning: --drop-non-ip drops ARP, which cuts IPv4 neighbour resolution on "
        f"{target.ifname} ({', '.join(addrs)}); hosts will lose it as neighbour entries expire"
    ]


def attach(app, ifname: str, mode: str = "native", options: FilterOptions = FilterOptions(),
           force: bool = False) -> AttachResult:
    privileges.require_attach(f"attaching XDP to {ifname}")
    from .bpffs import ensure_mounted
    from .compiler import compile_and_load

    ensure_mounted()
    with app.state.lock():
        target = resolve(app, ifname)
        if target.foreign and not force:
            raise ForeignProgram(
                ifname, target.attached_id, prog_name(target.attached_id),
                "xdpctl will not replace it; use --force to replace it",
            )
        _check_mode(target, mode, force)
        notes = _arp_note(app, target, options)
        att = target.att
        replacing_own = target.ours
        stale_aside = None
        if not replacing_own and att.exists():
            # State left from an earlier program that is no longer attached:
            # never reuse its maps; set it aside until this attach succeeds.
            stale_aside = att.path.with_name(f"{att.path.name}_stale_{os.getpid()}")
            os.rename(att.path, stale_aside)
        pins_before = set(att.pins())
        old_meta = target.meta if replacing_own else None
        if not replacing_own:
            app.state.create(att)

        loaded = None
        attached = False
        try:
            loaded = compile_and_load(
                filter_program(options, str(att.path)),
                device=ifname if mode == "offload" else None,
            )
            if loaded.headers.kind == "fallback":
                notes.append("note: " + loaded.headers.describe(os.uname().release))
            new_id = libbpf.prog_info(loaded.prog_fd).id
            now = int(time.time())
            # Record the program about to go on before it does, so that a
            # crash in between is recognisable (pending_prog_id).
            att.write_meta(contract.Meta(
                abi_version=contract.ABI_VERSION,
                ifindex=target.link.ifindex,
                netns_ino=app.netns_ino,
                prog_id=old_meta.prog_id if old_meta else 0,
                pending_prog_id=new_id,
                mode=contract.MODES[mode],
                options=old_meta.options if old_meta else options.bits,
                attached_at=old_meta.attached_at if old_meta else now,
                features=old_meta.features if old_meta else 0,
                ifname=ifname,
            ))
            libbpf.obj_pin(loaded.prog_fd, att.pin(contract.PIN_PROG + "_new"))
            if replacing_own:
                with libbpf.opened(att.pin(contract.PIN_PROG)) as old_fd:
                    app.netlink.xdp_set(target.link, loaded.prog_fd, mode, expected_fd=old_fd)
            elif target.foreign:
                app.netlink.xdp_set(target.link, loaded.prog_fd, mode)
            else:
                try:
                    app.netlink.xdp_set(target.link, loaded.prog_fd, mode, noexist=True)
                except AlreadyAttached:
                    now_there = app.netlink.link(ifname).xdp
                    pid = now_there.prog_id if now_there else 0
                    raise ForeignProgram(ifname, pid, prog_name(pid),
                                         "it appeared while xdpctl was attaching; nothing was replaced") from None
            attached = True
            os.replace(att.pin(contract.PIN_PROG + "_new"), att.pin(contract.PIN_PROG))
            att.write_meta(contract.Meta(
                abi_version=contract.ABI_VERSION,
                ifindex=target.link.ifindex,
                netns_ino=app.netns_ino,
                prog_id=new_id,
                pending_prog_id=0,
                mode=contract.MODES[mode],
                options=options.bits,
                attached_at=now,
                features=0,
                ifname=ifname,
            ))
        except BaseException:
            if not attached:
                _roll_back(att, replacing_own, pins_before, old_meta)
                if stale_aside is not None:
                    os.rename(stale_aside, att.path)
            raise
        finally:
            if loaded is not None:
                loaded.close()
        if stale_aside is not None:
            shutil.rmtree(stale_aside, ignore_errors=True)

    replaced = "own" if replacing_own else ("foreign" if target.foreign else "")
    return AttachResult(ifname, target.link.ifindex, mode, new_id, replaced, options, notes)


def _roll_back(att, replacing_own: bool, pins_before: set[str], old_meta) -> None:
    """Remove what a failed attach created; the old state stays as it was."""
    if not replacing_own:
        att.remove()
        return
    for pin in set(att.pins()) - pins_before:
        with contextlib.suppress(OSError):
            os.unlink(att.pin(pin))
    if old_meta is not None:
        try:
            att.write_meta(old_meta)
        except KernelError:
            pass
