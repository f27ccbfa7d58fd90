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
from ..lifecycle import bans
from ..lifecycle.ruleops import describe, limit_counts, raw_hits
from ..lifecycle.target import Target, forget_gone, load, prog_name, recorded, resolve


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
        entry["trace"] = _trace(target)
    return entry


def _trace(target: Target) -> dict | None:
    """The trace running on target ({"pid", "prog_id"}: prog_id is the
    traced program, attached in place of the recorded one), or None."""
    from ..lifecycle import trace

    who = trace.owner(target.att)
    if who is None or not trace.alive(who):
        return None
    return {"pid": who.pid, "prog_id": who.prog_id}


def steering_warnings(app, target: Target) -> list[dict]:
    """The redirect rules of a managed interface whose targets cannot be
    sent to now (gone, renamed, down; CPUs offline): lifecycle/steering.py."""
    from ..datapath.layout import Layout
    from ..lifecycle import steering

    if not Layout.unpack(target.meta.layout).actions & (contract.ACTS_REDIRECT | contract.ACTS_CPU):
        return []
    return steering.problems(app, target.ifname, Current.read(target).rules)


IN_FLIGHT = ("another xdpctl is changing it (it holds its namespace's lock); `xdpctl status` again shows "
             "the outcome")


def status(app) -> dict:
    """Every interface with an XDP program, xdpctl's or not. A change another
    xdpctl has in flight is said to be so, not taken for a leftover, and not
    waited for."""
    gone = forget_gone(app, wait=False)
    out = []
    stale = []
    in_flight = []
    for link in app.netlink.links():
        target = load(app, link, wait=False)
        link = target.link
        if target.in_flight:
            in_flight.append({"ifname": link.ifname, "ifindex": link.ifindex, "reason": IN_FLIGHT})
            if link.xdp:
                out.append(dict(_entry(target), in_flight=True))
            continue
        if target.other_abi:
            stale.append({"ifname": link.ifname, "ifindex": link.ifindex,
                          "reason": f"state written by xdpctl ABI version {target.meta.abi_version} "
                                    f"(this one reads {contract.ABI_VERSION}); left alone"})
        if link.xdp:
            out.append(_entry(target))
            if target.ours and (warnings := steering_warnings(app, target)):
                out[-1]["warnings"] = warnings
            if target.ours:
                from .flows import egress_status

                out[-1]["egress"] = egress_status(app, target)  # --established's TC program, or None
        elif target.stale and not target.other_abi:
            stale.append({"ifname": link.ifname, "ifindex": link.ifindex,
                          "reason": "xdpctl's state remains but no program is attached"})
    result = {"interfaces": out}
    if in_flight:
        result["in_flight"] = in_flight
    if stale or gone:
        result["stale"] = stale + [{"ifname": n, "ifindex": None, "reason": "interface gone; state removed"}
                                   for n in gone]
    return result


def managed_targets(app, ifnames: tuple[str, ...]) -> list[Target]:
    """The given interfaces (each must be xdpctl's), or every managed one."""
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
    """Counters of the given managed interfaces, or of all of them, since the
    last reset. reset: start them again from what this read (nothing the
    program counts meanwhile is lost: see datapath/counters.py)."""
    privileges.require_bpf("reading xdpctl's counters")
    out = []
    for target in managed_targets(app, ifnames):
        if not reset:
            out.append(_stats_entry(target, False))
            continue
        with app.state.lock():  # one reset at a time, and no change of rules meanwhile
            target = load(app, app.netlink.link_by_index(target.link.ifindex) or target.link)
            if not target.ours:
                raise NotManaged(target.ifname)
            out.append(_stats_entry(target, True))
    return {"interfaces": out}


def _stats_entry(target: Target, reset: bool) -> dict:
    entry = _entry(target)
    directory = str(target.att.path)
    base = counters.read_baseline(directory)  # before the counts: see there
    raw = counters.read(target.att.pin(contract.PIN_COUNTERS))
    current = Current.read(target)
    hits = raw_hits(target, current.rules)
    entry["counters"] = counters.since(raw, base)
    entry["total"] = counters.total(entry["counters"])
    entry["rules"] = describe(current.rules, counters.hits_since(hits, base), limit_counts(target, current.rules))
    ban_totals = bans.totals(target)
    if ban_totals is not None:  # the ban list (--block): live bans and what they dropped
        entry["bans"] = ban_totals
    if reset:
        counters.write_baseline(directory, raw, {r.slot: hits.get(r.slot, (0, 0)) for r in current.rules})
    return entry
