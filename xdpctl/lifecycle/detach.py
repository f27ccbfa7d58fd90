"""detach: remove xdpctl's program from an interface, with its pins and state.

The removal is a compare-and-swap against the program xdpctl recorded, so a
program someone else put there in the meantime is never removed. The TC
egress program of --established goes with it (egress.py: only the filter,
and the qdisc, xdpctl made).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..datapath import contract
from ..kernel import libbpf, privileges
from ..errors import ForeignProgram, NotManaged
from . import egress, trace
from .target import prog_name, recorded, resolve


@dataclass
class DetachResult:
    ifname: str
    prog_id: int
    note: str = ""


def detach(app, ifname: str) -> DetachResult:
    privileges.require_attach(f"detaching XDP from {ifname}", loads=False)
    with app.state.lock():
        return _detach(app, resolve(app, ifname))


def _detach(app, target) -> DetachResult:
    ifname = target.ifname
    if not target.ours:
        if target.foreign:
            hint = "xdpctl leaves programs it did not load alone"
            if target.meta is not None:
                hint = ("it replaced xdpctl's program, so xdpctl leaves it alone; "
                        "`xdpctl clean` removes xdpctl's leftover state")
            raise ForeignProgram(ifname, target.attached_id,
                                 prog_name(target.attached_id), hint)
        if target.stale:
            egress.release(app, target.link, target.att.path)  # a TC filter the state still names
            target.att.remove()
            return DetachResult(ifname, 0, "no program was attached; removed xdpctl's leftover state")
        raise NotManaged(ifname)
    trace.refuse_if_running(target.att, ifname, "detach it")
    with libbpf.opened(target.att.pin(contract.PIN_PROG)) as fd:
        app.netlink.xdp_set(target.link, -1, target.meta.mode_name, expected_fd=fd)
    egress.release(app, target.link, target.att.path)  # --established's TC filter, if any
    target.att.remove()
    return DetachResult(ifname, target.meta.prog_id)


def detach_all(app) -> tuple[list[DetachResult], list[tuple[str, str]]]:
    """Detach xdpctl's program from every interface of the namespace that
    carries one. Returns what was detached, and (interface, error) pairs for
    those that could not be (each is tried; a foreign program stays)."""
    from ..errors import XdpctlError

    privileges.require_attach("detaching xdpctl's programs", loads=False)
    done, failed = [], []
    with app.state.lock():
        for target in recorded(app):
            if not target.att.exists():
                continue
            try:
                done.append(_detach(app, target.refuse_other_abi()))
            except XdpctlError as exc:
                failed.append((target.ifname, str(exc)))
    return done, failed
