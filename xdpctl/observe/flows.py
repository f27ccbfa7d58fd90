"""flows: what the flow table of --established holds, and the egress program
that fills it. Read from the pins, as stats reads the counters: nothing is
compiled, and no lock is taken unless a killed xdpctl left something to
settle.

A flow's times are the programs' (CLOCK_MONOTONIC_COARSE, the last tick's
CLOCK_MONOTONIC), so its age and idle time are measured against
CLOCK_MONOTONIC here (a tick, a few milliseconds, at most apart). Entries whose
timeout has passed stay in the table until the LRU map reuses them (or a
frame out opens the flow anew); they are counted as expired, not listed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ..datapath import contract
from ..datapath.flow_table import Flow, count_live
from ..datapath.layout import Layout
from ..kernel import libbpf, privileges
from ..lifecycle import egress
from ..lifecycle.deploy import Current
from ..lifecycle.target import Target, prog_name
from .report import managed_targets


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def read_table(target: Target) -> list[Flow]:
    """Every entry of the interface's table, live or expired ([] without one)."""
    return read_pinned(target.att.pin(contract.PIN_FLOWS))


def read_pinned(path: str) -> list[Flow]:
    """Every entry of the table pinned at path ([] when it is gone)."""
    return [Flow.decode(k, v) for k, v in _entries(path)]


def _entries(path: str) -> list[tuple[bytes, bytes]]:
    try:
        with libbpf.opened(path) as fd:
            size = libbpf.map_info(fd).max_entries
            return libbpf.map_lookup_batch(fd, contract.FLOW_KEY.size, contract.FLOW.size, size)
    except FileNotFoundError:
        return []


@dataclass(frozen=True)
class TableSize:
    """How full an attachment's flow table is (the exporter's gauges)."""

    live: int  # flows whose timeout has not passed: what `flows` lists
    entries: int  # live and expired: what the LRU map holds
    size: int  # the most it holds


def table_size(directory: str, now: int | None = None) -> TableSize | None:
    """The table of the attachment at directory, or None without one."""
    if not egress.has_table(directory):
        return None
    settings = egress.read_settings(directory)
    values = [v for _, v in _entries(os.path.join(directory, contract.PIN_FLOWS))]
    now = now_ns() if now is None else now
    return TableSize(count_live(values, settings, now), len(values), settings.entries)


def egress_status(app, target: Target) -> dict | None:
    """The egress program as `status` and `flows` show it, or None without one."""
    record = egress.read_record(target.att.path)
    if record is None or not record.prog_id:
        return None
    return {
        "prog_id": record.prog_id,
        "prog_name": prog_name(record.prog_id) if egress.attached(app, target.link, record) else None,
        "attached": egress.attached(app, target.link, record),
        "tc_prio": record.prio,
        "tc_handle": record.handle,
        "qdisc": "clsact, made by xdpctl" if record.own_qdisc else "clsact, shared (not xdpctl's)",
    }


def _established_rules(target: Target) -> int:
    if not Layout.unpack(target.meta.layout).kinds & contract.KIND_ESTABLISHED:
        return 0
    return sum(1 for r in Current.read(target).rules if r.match.established)


def entry(app, target: Target, now: int | None = None) -> dict:
    """One interface's table (`xdpctl flows --json`)."""
    now = now_ns() if now is None else now
    settings = egress.read_settings(target.att.path)
    out = {
        "ifname": target.ifname,
        "ifindex": target.link.ifindex,
        "established_rules": _established_rules(target),
        "timeouts": settings.describe_timeouts(),
        "table": None,
        "egress": egress_status(app, target),
        "flows": [],
    }
    if not egress.has_table(target.att.path):
        out["table_size"] = settings.entries  # what the next table gets
        return out
    flows = read_table(target)
    live = [f for f in flows if f.live(settings, now)]
    live.sort(key=lambda f: (f.family, f.proto, int(f.host), f.host_port, int(f.remote), f.remote_port))
    out["table"] = {"size": settings.entries, "entries": len(flows), "live": len(live),
                    "expired": len(flows) - len(live)}
    out["flows"] = [f.describe(settings, now) for f in live]
    return out


def flows(app, ifnames: tuple[str, ...] = ()) -> dict:
    """The tables of the given managed interfaces, or of every managed
    interface that has one."""
    privileges.require_bpf("reading xdpctl's flow tables")
    targets = managed_targets(app, ifnames)
    if not ifnames:  # every managed interface that has a table
        targets = [t for t in targets if egress.has_table(t.att.path)]
    now = now_ns()
    return {"interfaces": [entry(app, t, now) for t in targets]}
