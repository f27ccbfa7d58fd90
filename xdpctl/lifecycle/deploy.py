"""Making an interface carry a given program and rule set, all or nothing.

Every change goes one of two ways:

- the rule set fits the attached program's layout (its kinds of match and
  capacities): write the rules and tables of the inactive generation, then
  flip config.gen. No compile; the flip is the commit point.
- it does not (a new kind of match, more rules than the tables hold, other
  options, a first attach): compile a program for a grown layout. Its new
  tables hold the *current* rules in the active generation and the new rules
  in the other, written before the swap; the program is replaced
  (atomically, compare-and-swap against the old one) and the generation
  flipped right after, config_flip recording both so that recovery.py
  settles a kill in between to old or new. A Ctrl-C waits until the change
  is done (signals.py). Maps whose layout did not change (counters, config,
  rules) are reused, so no frame goes uncounted; hits move to a bigger map
  when they must.

A failure before the commit point removes what the attempt created; the old
program, maps and rules stay as they were.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..datapath import contract
from ..rules import engine, limit_tables
from .. import faults
from . import egress
from ..kernel import libbpf, privileges
from ..errors import BpffsMissing, ForeignProgram, KernelError, ModeError, XdpctlError
from ..datapath.layout import Layout
from ..kernel.netlink import AlreadyAttached
from ..datapath.program import FilterOptions, filter_program
from . import namespaces, recovery, signals, steering, trace
from .recovery import PIN_PROG_NEW, aside_path, drop_unused_pins
from ..rules.model import Rule, unpack_targets
from ..rules.tables import build
from .target import Target, prog_name

HITS_SETTLE_S = 0.05  # after a program swap, before the old hits map's last read


@dataclass
class Outcome:
    prog_id: int
    compiled: bool  # a new program was compiled and attached
    replaced: str = ""  # "", "own" or "foreign"
    layout: Layout = field(default_factory=Layout)
    notes: list[str] = field(default_factory=list)


@dataclass
class Current:
    """What the interface holds now, as xdpctl recorded it."""

    options: FilterOptions
    mode: str
    layout: Layout
    gen: int
    rules: list[Rule]
    next_id: int
    next_seq: int
    # The inactive generation's rules as stored (id -> struct xdpctl_rule):
    # the next change writes only what differs from them.
    inactive: dict[int, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def read(cls, target: Target) -> "Current":
        meta = target.meta
        layout = Layout.unpack(meta.layout)
        gen, rules, next_id, next_seq, inactive = 0, [], 1, 1, {}
        config = target.att.pin(contract.PIN_CONFIG)
        if layout.engine:
            for pin in (contract.PIN_CONFIG, contract.PIN_RULES):
                if not os.path.exists(target.att.pin(pin)):  # unpinned behind xdpctl's back, for good
                    raise KernelError(
                        f"xdpctl's state for {target.ifname} is damaged beyond repair: its {pin} pin is "
                        f"missing; the program still filters as it did. `xdpctl detach {target.ifname}` "
                        f"removes it, `xdpctl clean` stops managing it")
            gen, _count, next_id, next_seq = engine.read_config(config)
            stored = engine.read_rules_raw(target.att.pin(contract.PIN_RULES))
            targets = engine.read_targets_raw(str(target.att.path))[gen]
            rules = [Rule.unpack(raw, targets.get(rule_id)) for rule_id, raw in stored[gen].items()]
            inactive = stored[1 - gen]
        return cls(FilterOptions.from_bits(meta.options), meta.mode_name, layout, gen, rules, next_id, next_seq,
                   inactive)


def _meta(target: Target, app, *, prog_id: int, pending: int, mode: str, options: FilterOptions,
          layout: Layout, attached_at: int) -> contract.Meta:
    return contract.Meta(
        abi_version=contract.ABI_VERSION,
        ifindex=target.link.ifindex,
        netns_ino=app.netns_ino,
        prog_id=prog_id,
        pending_prog_id=pending,
        mode=contract.MODES[mode],
        options=options.bits,
        attached_at=attached_at,
        features=layout.kinds,
        ifname=target.ifname,
        layout=layout.pack(),
    )


def deploy(app, target: Target, *, mode: str, options: FilterOptions, rules: list[Rule],
           next_id: int, next_seq: int, force: bool = False, current: Current | None = None,
           features: int = 0) -> Outcome:
    """Make target carry options and rules in mode. Call with the lock held.
    current: Current.read(target), when the caller has read it under the lock;
    features: layout bits the program must have beyond what the rules need
    (contract.FEAT_BANS: the ban list, for `ban add`)."""
    att = target.att
    if current is None and target.ours:
        current = Current.read(target)
    built = build(rules)
    if features:
        built = replace(built, needs=replace(built.needs, actions=built.needs.actions | features))
    if current is not None and current.options == options and current.mode == mode \
            and current.layout.fits(built.needs):
        if current.layout.engine:
            try:
                _write_and_flip(app, att, current.layout, current, built, rules, next_id, next_seq)
            except (XdpctlError, OSError) as exc:
                _check_bpffs(app, target.ifname, False, exc)
                raise
        return Outcome(target.meta.prog_id, False, layout=current.layout)
    return _swap(app, target, current, mode=mode, options=options, built=built, rules=rules,
                 next_id=next_id, next_seq=next_seq, force=force)


def _check_bpffs(app, ifname: str, committed: bool, exc: BaseException) -> None:
    """If bpffs went from under a change (`umount -l`), say so instead of
    what failed because of it (a compile that cannot open its pinned maps,
    a pin that is not there)."""
    from ..kernel.bpffs import BPFFS, is_mounted

    root = app.state.root
    if root.is_dir() and (root.parent != Path(BPFFS) or is_mounted(BPFFS)):
        return
    what = ("the new program went in, but xdpctl could not finish recording it (where the state is still "
            "reachable, the next xdpctl puts the old one back)" if committed
            else f"nothing on {ifname} was changed")
    raise BpffsMissing(
        f"bpffs was unmounted from {BPFFS} while xdpctl was changing {ifname}, and xdpctl's state (its pins) "
        f"with it: {what}. Mount it again (`mount -t bpf bpf {BPFFS}`); `xdpctl doctor` then says what "
        "xdpctl still knows") from exc


def _write_and_flip(app, att, layout: Layout, current: Current, built, rules: list[Rule], next_id: int,
                    next_seq: int) -> None:
    """Write the inactive generation, then flip to it (the commit point)."""
    _write_inactive(app, att, layout, current, built, rules)
    engine.write_config(att.pin(contract.PIN_CONFIG), 1 - current.gen, len(rules), next_id, next_seq)
    steering.after_flip(str(att.path), layout, rules)


def _write_inactive(app, att, layout: Layout, current: Current, built, rules: list[Rule]) -> None:
    """Write rules and tables into the generation no program reads (the
    inactive one of layout's tables); nothing changes until the flip."""
    new = 1 - current.gen
    engine.write_tables(att.pin(layout.pin_tables()), new, built, layout)
    engine.write_rules(att.pin(contract.PIN_RULES), new, rules, current.inactive)
    _write_steering(app, att, layout, new, rules)
    active = {r.slot for r in current.rules}
    fresh = {r.slot for r in rules if r.id >= current.next_id}
    _write_limits(att, layout, current.rules + rules, fresh - active)
    # A rule new to the interface (an id never given before) may take the slot
    # of a rule deleted earlier: its hits start at zero. A rule that comes back
    # with its own id (a failed apply putting back what it removed) keeps its
    # hits, which its slot still holds: slots are given only to new ids.
    engine.zero_hits(att.pin(layout.pin_hits()), sorted(fresh - active))
    if layout.actions & contract.FEAT_LIMITS:  # what a limit saw starts at zero with its rule
        engine.zero_limit_stats(att.pin(layout.pin_limit_stats()), sorted(fresh - active))


def _write_limits(att, layout: Layout, rules: list[Rule], fresh: set[int]) -> None:
    """The limits of the rules a program may read, at their slots (the map
    the compile made; both generations' rules: the active ones may be in a
    map new with this program), each limited rule's table of buckets first
    (a new one for a rule new to its slot: fresh)."""
    if layout.actions & contract.FEAT_LIMITS:
        limit_tables.sync(att.pin(layout.pin_buckets()), rules, fresh)
        engine.write_limits(att.pin(layout.pin_limits()), rules)


def _write_steering(app, att, layout: Layout, gen: int, rules: list[Rule]) -> None:
    """Generation gen's redirect targets: their record beside the rules, and
    their devmap and cpumap entries (rules/actions.py, steering.py)."""
    directory = str(att.path)
    before = engine.read_targets_raw(directory)[gen]
    engine.write_targets(directory, gen, rules, before)
    if layout.actions:
        steering.write_generation(app, directory, layout, gen, rules, [unpack_targets(raw) for raw in before.values()])


def _swap(app, target: Target, current: Current | None, *, mode: str, options: FilterOptions, built,
          rules: list[Rule], next_id: int, next_seq: int, force: bool) -> Outcome:
    from ..kernel.compiler import compile_and_load

    att = target.att
    trace.refuse_if_running(att, target.ifname, "change what needs a new program")
    old_layout = current.layout if current else Layout()
    # Grown layouts hold everything the old one did, so the current rules fit too.
    layout = old_layout if old_layout.fits(built.needs) else old_layout.grown(built.needs)
    gen = current.gen if current else 0
    if current is not None or layout.engine:  # maps pinned before the compile
        privileges.require_reopen_pins(f"compiling a program for {target.ifname} against its pinned maps")
    flows = egress.Change(app, target, old_layout, layout, mode)  # the TC side of --established
    flows.check()

    stale_aside = None
    if current is None and att.exists():
        # State left by a program that is no longer attached: never reuse
        # its maps; set it aside until this attach succeeds.
        stale_aside = aside_path(att)
        os.rename(att.path, stale_aside)
    pins_before = set(att.pins())
    if current is None:
        app.state.create(att)
        namespaces.record(att)  # so that clean can ask the kernel whether the namespace lives

    loaded = None
    committed = False
    new_tables = layout.engine and layout.tag != old_layout.tag
    new_hits = layout.engine and layout.slots != old_layout.slots
    try:
        if new_tables:
            path = engine.create_tables(str(att.path), layout)
            if current is not None and current.rules:
                # The current rules, where the new layout holds them; one that
                # drops the flow lookup cannot, and starts with the new rules.
                kept = build(current.rules)
                engine.write_tables(path, gen, kept if layout.fits(kept.needs) else built, layout)
            else:
                engine.write_tables(path, gen, built, layout)
        steering.prepare(str(att.path), layout)  # the devmap and cpumap BCC opens
        flows.prepare()
        loaded = compile_and_load(
            filter_program(options, str(att.path), layout),
            device=target.ifname if mode == "offload" else None,
        )
        flows.load()
        notes = []
        if loaded.headers.kind == "fallback" and current is None:
            notes.append("note: " + loaded.headers.describe(os.uname().release))
        if app.verbose and loaded.cache:
            notes.append("note: " + loaded.cache)
        new_id = libbpf.prog_info(loaded.prog_fd).id
        _hold_records(att, loaded.prog_fd, layout)
        hits_copied: dict[int, tuple[int, int]] = {}
        if new_hits and old_layout.engine:
            hits_copied = engine.read_hits(att.pin(old_layout.pin_hits()), old_layout.slots)
            engine.add_hits(att.pin(layout.pin_hits()), hits_copied)
        flip = None
        if current is None and layout.engine:
            # A first attach: the attach itself is the commit point.
            engine.write_rules(att.pin(contract.PIN_RULES), gen, rules)
            _write_steering(app, att, layout, gen, rules)
            _write_limits(att, layout, rules, {r.slot for r in rules})
            engine.write_config(att.pin(contract.PIN_CONFIG), gen, len(rules), next_id, next_seq)
        elif layout.engine:
            # The new rules go into the inactive generation now, where neither
            # program reads them; the flip follows the swap at once, and
            # config_flip records it, so that a kill in between settles to
            # the old program with the old rules or the new with the new.
            _write_inactive(app, att, layout, current, built, rules)
            config = att.pin(contract.PIN_CONFIG)
            flip = engine.config_value(1 - gen, len(rules), next_id, next_seq)
        now = int(time.time())
        attached_at = target.meta.attached_at if current else now
        att.write_meta(_meta(target, app, prog_id=target.meta.prog_id if current else 0, pending=new_id,
                             mode=mode, options=current.options if current else options,
                             layout=old_layout if current else layout, attached_at=attached_at))
        if flip is not None:  # after pending: config_flip with nothing pending means "recorded"
            recovery.record_flip(att, engine.read_config_raw(config), flip)
        faults.point("flip-pinned")
        libbpf.obj_pin(loaded.prog_fd, att.pin(PIN_PROG_NEW))
        faults.point("pinned-new")
        flows.attach()  # recording flows before the XDP program looks them up
        # From the swap on, the change must be finished: a Ctrl-C waits until
        # it is; a SIGKILL leaves what recovery.settle finishes or undoes.
        with signals.held():
            replaced = _attach(app, target, loaded.prog_fd, mode, current is not None, force)
            committed = True
            faults.point("swapped")
            if flip is not None:
                engine.store_config(config, flip)
            faults.point("flipped")
            # Record, then move the pin: a crash between the two leaves a
            # state that recovery.settle finishes (see there).
            att.write_meta(_meta(target, app, prog_id=new_id, pending=0, mode=mode, options=options,
                                 layout=layout, attached_at=attached_at))
            faults.point("recorded")
            flows.commit()
            os.replace(att.pin(PIN_PROG_NEW), att.pin(contract.PIN_PROG))
            recovery.forget_flip(att)
        if flip is not None:
            steering.after_flip(str(att.path), layout, rules)  # CPUs the new rules no longer use
        if new_hits and old_layout.engine:
            time.sleep(HITS_SETTLE_S)  # the old program's last frames
            final = engine.read_hits(att.pin(old_layout.pin_hits()), old_layout.slots)
            engine.add_hits(att.pin(layout.pin_hits()), {
                s: (p - hits_copied.get(s, (0, 0))[0], b - hits_copied.get(s, (0, 0))[1])
                for s, (p, b) in final.items() if (p, b) != hits_copied.get(s, (0, 0))})
        flows.finish()
    except BaseException as exc:
        if not committed:
            flows.undo()
            _roll_back(att, current, pins_before, target.meta)
            if stale_aside is not None:
                with contextlib.suppress(FileNotFoundError):  # gone with bpffs, if it was unmounted
                    os.rename(stale_aside, att.path)
        if isinstance(exc, (XdpctlError, OSError)):
            _check_bpffs(app, target.ifname, committed, exc)
        raise
    finally:
        if loaded is not None:
            loaded.close()
        flows.close()
    if stale_aside is not None:
        egress.release(app, target.link, stale_aside)  # a filter the stale state names
        shutil.rmtree(stale_aside, ignore_errors=True)
    drop_unused_pins(att, layout)
    return Outcome(new_id, True, replaced, layout, notes)


def _hold_records(att, prog_fd: int, layout: Layout) -> None:
    """Have the program hold the maps only user space reads (meta, rules), as
    it holds those it uses: should their pins be removed behind xdpctl's
    back, recovery.repair pins them again from the program."""
    for pin in (contract.PIN_META, contract.PIN_RULES) if layout.engine else (contract.PIN_META,):
        try:
            with libbpf.opened(att.pin(pin)) as map_fd:
                libbpf.prog_bind_map(prog_fd, map_fd)
        except OSError:
            pass  # a kernel before 5.10: such a pin, once removed, cannot be repaired


def _attach(app, target: Target, fd: int, mode: str, own: bool, force: bool) -> str:
    """Put fd on the interface: compare-and-swap against xdpctl's program,
    no-replace on an empty interface, plain replace of a foreign one (--force)."""
    if own:
        with libbpf.opened(target.att.pin(contract.PIN_PROG)) as old_fd:
            app.netlink.xdp_set(target.link, fd, mode, expected_fd=old_fd)
        return "own"
    if target.foreign:
        if not force:
            raise ForeignProgram(target.ifname, target.attached_id, prog_name(target.attached_id),
                                 "xdpctl will not replace it; use --force to replace it")
        app.netlink.xdp_set(target.link, fd, mode)
        return "foreign"
    try:
        app.netlink.xdp_set(target.link, fd, mode, noexist=True)
    except AlreadyAttached:
        now_there = app.netlink.link(target.ifname).xdp
        pid = now_there.prog_id if now_there else 0
        raise ForeignProgram(target.ifname, pid, prog_name(pid),
                             "it appeared while xdpctl was attaching; nothing was replaced") from None
    return ""


def _roll_back(att, current: Current | None, pins_before: set[str], old_meta) -> None:
    """Remove what a failed change created; the old state stays as it was."""
    if current is None:
        att.remove()
        return
    for pin in set(att.pins()) - pins_before:
        with contextlib.suppress(OSError):
            os.unlink(att.pin(pin))
    if old_meta is not None:
        with contextlib.suppress(KernelError):
            att.write_meta(old_meta)


def check_mode(target: Target, mode: str, force: bool) -> None:
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
