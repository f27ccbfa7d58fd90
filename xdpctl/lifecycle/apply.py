"""apply: make the machine match xdpctl.toml, and export: write what runs.

The whole file is checked first (syntax, values, interfaces, programs in
the way): one problem and nothing changes. Then each interface that differs
gets one deploy (xdpctl/lifecycle/deploy.py): atomic on that interface. If a later
interface fails, the ones already changed are put back as they were.
"""

from __future__ import annotations

import contextlib
import dataclasses

from ..datapath import contract
from ..kernel import privileges
from ..rules.config_file import ConfigFile, InterfaceConfig, dump
from ..rules.model import file_label
from . import steering
from .deploy import Current, check_mode, deploy
from ..errors import BadInput, ForeignProgram, InterfaceNotFound, ModeError, XdpctlError
from ..rules.plan import InterfacePlan, plan_interface
from ..rules.model import sort_rules
from .target import prog_name, recorded, resolve


def plans(app, config: ConfigFile) -> tuple[list[tuple[object, Current | None, InterfacePlan]], list[str]]:
    """(target, what it holds now, plan) per interface in the file, and notes
    on managed interfaces the file leaves alone."""
    out = []
    for name, want in config.interfaces.items():
        try:
            target = resolve(app, name)
        except InterfaceNotFound:
            raise BadInput(f"{config.path}:{want.line}: no interface named {name!r} here; "
                           "`ip link` lists them") from None
        if target.foreign:
            raise ForeignProgram(name, target.attached_id, prog_name(target.attached_id),
                                 f"{config.path}:{want.line}: detach it first, or leave {name} out of the file")
        try:
            check_mode(target, want.mode, False)
        except ModeError as exc:
            raise BadInput(f"{config.path}:{want.line}: {exc}") from None
        current = Current.read(target) if target.ours else None
        out.append((target, current, plan_interface(_resolved(app, config, want), current)))
    named = set(config.interfaces)
    notes = []
    for att in app.state.attachments(app.netns_ino):
        link = app.netlink.link_by_index(att.ifindex)
        if link is not None and link.ifname not in named:
            notes.append(f"{link.ifname}: not in the file; left as it is (`xdpctl detach {link.ifname}` removes it)")
    return out, notes


STEERING = (contract.ACTION_REDIRECT, contract.ACTION_REDIRECT_CPU, contract.ACTION_TX)


def _resolved(app, config: ConfigFile, want: InterfaceConfig) -> InterfaceConfig:
    """want with its redirect targets found on the machine (name and
    ifindex) and checked, as `rule add` checks them; FILE:LINE on a problem."""
    specs = []
    for spec in want.rules:
        if spec.action in STEERING:
            try:
                spec = dataclasses.replace(spec, steer=steering.resolve(app, want.name, spec.action, spec.steer,
                                                                        file_label, want.mode))
            except BadInput as exc:
                raise BadInput(f"{config.path}:{spec.line}: {exc}") from None
        specs.append(spec)
    return dataclasses.replace(want, rules=specs)


def apply(app, config: ConfigFile, dry_run: bool = False) -> tuple[list[InterfacePlan], list[str]]:
    privileges.require_attach("applying a configuration")
    from ..kernel.bpffs import ensure_mounted

    if not dry_run:
        ensure_mounted()
    with app.state.lock() if not dry_run else contextlib.nullcontext():
        planned, notes = plans(app, config)
        result = [p for _, _, p in planned]
        if dry_run:
            return result, notes
        done = []
        try:
            for target, before, p in planned:
                if not p.changes:
                    continue
                # Put back if anything goes wrong from here: a Ctrl-C held until this
                # interface's swap is done (deploy.py) arrives once it has changed.
                done.append((p.name, before))
                deploy(app, target, mode=p.mode, options=p.options, rules=p.rules,
                       next_id=p.next_id, next_seq=p.next_seq, current=before)
        except BaseException:
            _put_back(app, done)
            raise
    return result, notes


def _put_back(app, done) -> None:
    """Undo the interfaces an interrupted apply changed, newest first (the
    last may have been left as it was: putting it back changes nothing)."""
    from .detach import detach

    for name, before in reversed(done):
        try:
            target = resolve(app, name)
            if before is None:
                detach(app, name)
            else:
                deploy(app, target, mode=before.mode, options=before.options, rules=before.rules,
                       next_id=before.next_id, next_seq=before.next_seq)
        except XdpctlError:
            pass  # the first error is the one reported; `xdpctl status` shows what is left


def export(app, ifnames: tuple[str, ...] = ()) -> str:
    privileges.require_bpf("reading xdpctl's rules")
    entries = []
    for target in recorded(app):
        if (ifnames and target.ifname not in ifnames) or not target.refuse_other_abi().ours:
            continue
        current = Current.read(target)
        entries.append((target.ifname, current.mode, current.options.policy, current.options.drop_non_ip,
                        sort_rules(current.rules)))
    missing = set(ifnames) - {e[0] for e in entries}
    if missing:
        raise BadInput(f"xdpctl manages no program on {', '.join(sorted(missing))}")
    return dump(sorted(entries))
