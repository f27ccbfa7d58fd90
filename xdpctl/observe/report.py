"""status and stats: what is attached where, and what it counted.

Both return plain dicts in the documented JSON schema; the CLI prints them as
JSON or hands them to xdpctl/cli/render.py. Keys may be added, never removed.
"""

from __future__ import annotations

import datetime as dt

from ..datapath import contract, counters
from ..kernel import privileges
from ..errors import NotManaged
from ..datapath.program import FilterOptions
from ..lifecycle.deploy import Current
from ..lifecycle.ruleops import describe, hits_of
from ..lifecycle.target import Target, forget_gone, load, prog_name, recorded, resolve


def _reset_hits(target: Target, current: Current) -> None:
    from ..rules import engine
    from ..datapath.layout import Layout

    layout = Layout.unpack(target.meta.layout)
    if layout.engine:
        engine.zero_hits(target.att.pin(layout.pin_hits()), [r.slot for r in current.rules])


def _when(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _entry(target: Target) -> dict:
    link, meta = target.link, target.meta
    entry = {
        "ifname": link.ifname,
        "ifindex": link.ifindex,
        "mode": link.xdp.mode if link.xdp else None,
        "prog_id": target.attached_id or None,
        "prog_name": prog_name(target.attached_id, target.att) if target.attached_id else None,
        "managed": target.ours,
    }
    if target.ours:
        options = FilterOptions.from_bits(meta.options)
        entry["options"] = options.describe()
        entry["policy"] = options.policy
        entry["attached_at"] = _when(meta.attached_at)
    return entry


def status(app) -> dict:
    """Every interface with an XDP program, xdpctl's or not."""
    gone = forget_gone(app)
    out = []
    stale = []
    for link in app.netlink.links():
        target = load(app, link)
        link = target.link
        if target.other_abi:
            stale.append({"ifname": link.ifname, "ifindex": link.ifindex,
                          "reason": f"state written by xdpctl ABI version {target.meta.abi_version} "
                                    f"(this one reads {contract.ABI_VERSION}); left alone"})
        if link.xdp:
            out.append(_entry(target))
            if target.ours:
                from .flows import egress_status

                out[-1]["egress"] = egress_status(app, target)  # --established's TC program, or None
        elif target.stale and not target.other_abi:
            stale.append({"ifname": link.ifname, "ifindex": link.ifindex,
                          "reason": "xdpctl's state remains but no program is attached"})
    result = {"interfaces": out}
    if stale or gone:
        result["stale"] = stale + [{"ifname": n, "ifindex": None, "reason": "interface gone; state removed"}
                                   for n in gone]
    return result


def _managed_targets(app, ifnames: tuple[str, ...]) -> list[Target]:
    if ifnames:
        targets = []
        for name in ifnames:
            target = resolve(app, name)
            if not target.ours:
                raise NotManaged(name)
            targets.append(target)
        return targets
    forget_gone(app)
    return [target for target in recorded(app) if target.ours]


def stats(app, ifnames: tuple[str, ...] = (), reset: bool = False) -> dict:
    """Counters of the given managed interfaces, or of all of them."""
    privileges.require_bpf("reading xdpctl's counters")
    out = []
    for target in _managed_targets(app, ifnames):
        entry = _entry(target)
        pin = target.att.pin(contract.PIN_COUNTERS)
        entry["counters"] = counters.read(pin)
        entry["total"] = counters.total(entry["counters"])
        current = Current.read(target)
        entry["rules"] = describe(current.rules, hits_of(target, current.rules))
        if reset:
            counters.reset(pin)
            _reset_hits(target, current)
        out.append(entry)
    return {"interfaces": out}
