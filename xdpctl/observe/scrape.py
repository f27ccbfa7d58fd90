"""What one scrape of the exporter reads: every attachment of every network
namespace, straight from its pins on bpffs.

A scrape compiles nothing, takes no lock and changes nothing: it never
settles a change a killed xdpctl left midway, nor removes the state of an
interface that is gone (commands do that). It reads the kernel's counters as
they are, monotonic for as long as the attachment lives: `stats --reset` and
the like are views of their own and do not reach this reading. An
attachment that vanishes while it is read (a detach meanwhile) is left out
of this scrape.

Which attachments count: those whose meta is this ABI version's and records
an attached program. In the exporter's own namespace, netlink also says
whether the interface still exists and still carries that program (or the
traced one, while `xdpctl trace` runs: the same maps, so the same counters), so an
interface deleted without a detach goes from the metrics at once; in other
namespaces (reading their links would take CAP_SYS_ADMIN to enter them) the
state is taken as recorded, until a command there, or `xdpctl clean`,
removes what is stale.

The netns label: "" for the machine's own namespace (PID 1's), the `ip
netns` name of another, or its inode number when it has no name.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Callable

from ..datapath import contract, counters
from ..datapath.layout import Layout
from ..datapath.program import FilterOptions
from ..errors import KernelError, MissingCapability
from ..lifecycle.state import Attachment, State
from ..lifecycle.trace import traced_prog_id
from ..rules import engine, limit_tables
from .flows import TableSize, table_size

NETNS_DIR = "/var/run/netns"  # where `ip netns add` names namespaces
HOST_LABEL = ""


@dataclass(frozen=True)
class RuleHits:
    rule_id: int
    packets: int
    bytes: int


@dataclass(frozen=True)
class Reading:
    """One attachment, as one scrape found it."""

    interface: str
    netns: str  # the label: "", an `ip netns` name, or the inode
    prog_id: int
    mode: str
    options: tuple[str, ...]
    counters: counters.Counters
    rules: tuple[RuleHits, ...] = field(default=())
    flows: TableSize | None = None  # the flow table of --established, when it has one
    # Rate limits and bans (issue 13): (live bans, frames they dropped), or
    # None without a ban list; keys the limited rules' tables evicted, or
    # None without limits.
    bans: tuple[int, int] | None = None
    evictions: int | None = None


def netns_ino(path: str) -> int:
    return os.stat(path).st_ino


def machine_netns_ino() -> int:
    """The machine's own network namespace: PID 1's. Where /proc/1 may not be
    looked at (a process without CAP_SYS_PTRACE, as the exporter's unit
    runs), the namespace this process started in, which is the machine's
    for a service."""
    try:
        return netns_ino("/proc/1/ns/net")
    except OSError:
        return netns_ino("/proc/self/ns/net")


def netns_labels(host_ino: int, names_dir: str = NETNS_DIR) -> Callable[[int], str]:
    """ino -> label, from the names `ip netns` gives now (the first in
    order where a namespace has several)."""
    named: dict[int, str] = {}
    try:
        entries = sorted(os.listdir(names_dir))
    except OSError:
        entries = []
    for name in entries:
        try:
            named.setdefault(netns_ino(os.path.join(names_dir, name)), name)
        except OSError:
            continue  # removed meanwhile, or not a namespace
    return lambda ino: HOST_LABEL if ino == host_ino else named.get(ino, str(ino))


@dataclass(frozen=True)
class Live:
    """What netlink says of one interface of the exporter's own namespace."""

    ifname: str
    prog_id: int  # the attached XDP program, 0 for none
    mode: str


def links_here() -> dict[int, Live]:
    """The interfaces of this process's namespace, by ifindex (netlink: a
    dump of links needs no capability)."""
    from ..kernel.netlink import Netlink

    with Netlink() as nl:
        return {link.ifindex: Live(link.ifname, link.xdp.prog_id if link.xdp else 0,
                                   link.xdp.mode if link.xdp else "") for link in nl.links()}


def _rule_hits(att: Attachment, layout: Layout) -> tuple[RuleHits, ...]:
    config = att.pin(contract.PIN_CONFIG)
    if not layout.engine or not os.path.exists(config):
        return ()
    gen = engine.read_config(config)[0]
    slots = engine.read_rule_slots(att.pin(contract.PIN_RULES), gen)
    if not slots:
        return ()
    hits = engine.read_hits(att.pin(layout.pin_hits()), layout.slots)
    return tuple(RuleHits(rule_id, *hits.get(slot, (0, 0))) for rule_id, slot in sorted(slots.items()))


def read_attachment(att: Attachment, label: str, live: dict[int, Live] | None, rules: bool) -> Reading | None:
    """One attachment, or None when it does not count (see the module's
    docstring). live: the exporter's own namespace's interfaces by ifindex,
    when att is in it."""
    meta = att.read_meta()
    if meta is None or meta.abi_version != contract.ABI_VERSION or not meta.prog_id:
        return None
    ifname, prog_id, mode = meta.ifname, meta.prog_id, meta.mode_name
    if live is not None:
        link = live.get(att.ifindex)
        # Mid-swap, the pending program may already be the attached one;
        # while `xdpctl trace` runs, the traced program (meta keeps the plain one).
        if link is None or not link.prog_id or (
                link.prog_id not in (meta.prog_id, meta.pending_prog_id) and link.prog_id != traced_prog_id(att)):
            return None
        ifname, prog_id, mode = link.ifname, link.prog_id, link.mode
    return Reading(
        interface=ifname,
        netns=label,
        prog_id=prog_id,
        mode=mode,
        options=tuple(FilterOptions.from_bits(meta.options).describe()),
        counters=counters.read(att.pin(contract.PIN_COUNTERS)),
        rules=_rule_hits(att, Layout.unpack(meta.layout)) if rules else (),
        **_limits(att, Layout.unpack(meta.layout)),
        flows=table_size(att.path),
    )


def _limits(att: Attachment, layout: Layout) -> dict:
    """The bans and evictions of an attachment whose program has them."""
    out: dict = {}
    if layout.actions & contract.FEAT_BANS:
        from ..lifecycle.bans import totals_at

        t = totals_at(att.pin(contract.PIN_BANS))
        out["bans"] = (t["bans"], t["packets"])
    if layout.actions & contract.FEAT_LIMITS and os.path.exists(att.pin(contract.PIN_CONFIG)):
        gen = engine.read_config(att.pin(contract.PIN_CONFIG))[0]
        slots = sorted(engine.read_rule_slots(att.pin(contract.PIN_RULES), gen).values())
        stats = engine.read_limit_stats(att.pin(layout.pin_limit_stats()), slots)
        keys = limit_tables.count_keys(att.pin(layout.pin_buckets()), slots)
        out["evictions"] = sum(max(0, stats[s][2] - keys.get(s, 0)) for s in slots)
    return out


def _read(att: Attachment, label: str, live: dict[int, Live] | None, rules: bool) -> Reading | None:
    """read_attachment, once more when a pin went between two reads: a
    change that moved the hits to a grown map (the new meta names the new
    one). A detach takes the directory too: then there is nothing to read."""
    try:
        for _ in range(2):
            try:
                return read_attachment(att, label, live, rules)
            except FileNotFoundError:
                if not att.exists():
                    return None
        return None
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise MissingCapability(f"reading {att.path}", "CAP_BPF (and root's access to the pins)") from exc
        raise KernelError(f"reading {att.path} failed: {exc.strerror or exc}") from exc


def read_all(state: State, *, rules: bool, host_ino: int, own_ino: int,
             own_links: Callable[[], dict[int, Live]], names_dir: str = NETNS_DIR,
             left_out: Callable[[str], None] | None = None) -> list[Reading]:
    """Every attachment that counts, in every namespace. own_links: the
    exporter's own namespace's interfaces, asked for only when it has
    attachments. left_out: told of an attachment that could not be read (a
    KernelError), which is then left out and the rest read; without it, the
    error is raised. A missing capability is raised either way: it is no
    one attachment's."""
    if not state.check():  # nothing attached anywhere (or bpffs not mounted)
        return []
    label = netns_labels(host_ino, names_dir)
    live: dict[int, Live] | None = None
    out = []
    for att in state.attachments():
        if att.netns_ino == own_ino and live is None:
            live = own_links()
        try:
            reading = _read(att, label(att.netns_ino), live if att.netns_ino == own_ino else None, rules)
        except MissingCapability:
            raise
        except KernelError as exc:
            if left_out is None:
                raise
            left_out(str(exc))
            continue
        if reading is not None:
            out.append(reading)
    return out
