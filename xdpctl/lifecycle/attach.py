"""attach: compile the filter, load it, and attach it, all or nothing.

A fresh attach uses the kernel's no-replace flag. Attaching again to an
interface xdpctl manages, with other options, swaps the program atomically
(compare-and-swap against the old one) and keeps its maps, so counters and
rules stay. A foreign program is replaced only with --force. The work is
xdpctl/lifecycle/deploy.py's; this module decides what to ask of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..datapath import contract
from ..kernel import privileges
from ..kernel.kernel_version import require_supported
from . import egress
from .deploy import Current, check_mode, deploy
from ..errors import ForeignProgram
from ..datapath.program import FilterOptions
from .target import Target, prog_name, resolve

MODES = tuple(contract.MODES)


@dataclass
class AttachResult:
    ifname: str
    ifindex: int
    mode: str
    prog_id: int
    replaced: str  # "", "own", "foreign" or "unchanged"
    options: FilterOptions
    rules: int = 0
    notes: list[str] = field(default_factory=list)
    flow_settings: object = None  # flow_table.FlowSettings set by this attach, or None
    egress_restored: bool = False  # the egress filter of --established was missing and is back


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
           force: bool = False, flow_timeouts: dict[str, int] | None = None,
           flow_entries: int | None = None) -> AttachResult:
    require_supported()  # before anything: no other check matters on a kernel that cannot load it
    privileges.require_attach(f"attaching XDP to {ifname}")
    from ..kernel.bpffs import ensure_mounted

    ensure_mounted()
    with app.state.lock():
        target = resolve(app, ifname)
        if target.foreign and not force:
            raise ForeignProgram(
                ifname, target.attached_id, prog_name(target.attached_id),
                "xdpctl will not replace it; use --force to replace it",
            )
        check_mode(target, mode, force)
        notes = _arp_note(app, target, options)
        settings = egress.settings_for(target, flow_timeouts, flow_entries)  # checked before any change
        if target.ours:
            current = Current.read(target)
            if current.options == options:
                if settings is not None:
                    egress.write_settings(target.att.path, settings)
                restored = egress.restore(app, target)
                return AttachResult(ifname, target.link.ifindex, mode, target.meta.prog_id, "unchanged",
                                    options, len(current.rules), notes, settings, restored)
            rules, next_id, next_seq = current.rules, current.next_id, current.next_seq
        else:
            rules, next_id, next_seq = [], 1, 1
        outcome = deploy(app, target, mode=mode, options=options, rules=rules, next_id=next_id,
                         next_seq=next_seq, force=force)
        if settings is not None:
            egress.write_settings(target.att.path, settings)
    return AttachResult(ifname, target.link.ifindex, mode, outcome.prog_id, outcome.replaced, options,
                        len(rules), notes + outcome.notes, settings)
