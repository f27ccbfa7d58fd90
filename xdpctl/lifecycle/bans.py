"""The ban list of an interface (--block, `xdpctl ban`): read, add and
delete entries of the pinned map the program checks before any rule, with
no reload. The map exists once the interface's program has the ban list
compiled in (XDPCTL_FEAT_BANS): with the first rule with --block, or the
first `ban add` (which gives the program one, with the same rules).

Times are the program's clock (bpf_ktime_get_ns, CLOCK_MONOTONIC). A ban
whose time has passed no longer drops anything; `ban list` removes it.
"""

from __future__ import annotations

import ipaddress
import time

from ..datapath import contract
from ..datapath.layout import Layout
from ..errors import BadInput
from ..kernel import libbpf, privileges
from ..rules.limits import BLOCK_MAX_S, NS, show_duration
from .deploy import Current, deploy
from .ruleops import _managed


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def parse_address(text, what: str = "ADDRESS") -> tuple[int, bytes]:
    """An IPv4 or IPv6 address (not a prefix) as (family, 16 bytes)."""
    s = str(text).strip()
    if "/" in s:
        raise BadInput(f"{what} {s} is a prefix; a ban is on one source address (like 203.0.113.9)")
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        raise BadInput(f"{what} {s!r} is not an IPv4 or IPv6 address (like 203.0.113.9 or 2001:db8::9)") from None
    if addr.version == 6 and addr.scope_id is not None:
        raise BadInput(f"{what} {s} names a zone; frames carry none: write the address without %zone")
    if addr.version == 6 and addr.ipv4_mapped is not None:
        raise BadInput(f"{what} {s} is an IPv4-mapped IPv6 address, which never appears on the wire as a "
                       f"source; ban {addr.ipv4_mapped}")
    return addr.version, addr.packed.ljust(16, b"\0")


def _has_list(target) -> bool:
    return bool(Layout.unpack(target.meta.layout).actions & contract.FEAT_BANS)


def _with_list(app, ifname: str) -> tuple[str, bool]:
    """The ban list's pin, the program given one first (a new program with
    the same rules, swapped in atomically) when it has none; and whether it
    was. Once there, the list stays with the interface's program until detach."""
    target = _managed(app, ifname)
    if _has_list(target):
        return target.att.pin(contract.PIN_BANS), False
    current = Current.read(target)
    deploy(app, target, mode=current.mode, options=current.options, rules=current.rules,
           next_id=current.next_id, next_seq=current.next_seq, current=current, features=contract.FEAT_BANS)
    return _managed(app, ifname).att.pin(contract.PIN_BANS), True  # deploy raises if the swap fails


def _address(family: int, raw: bytes) -> str:
    return str(ipaddress.ip_address(raw[:4] if family == 4 else raw))


def listing(app, ifname: str) -> dict:
    """The live bans, soonest to end first, and their totals; expired ones are removed."""
    privileges.require_bpf("reading the ban list")
    target = _managed(app, ifname)
    if not _has_list(target):
        return {"ifname": ifname, "bans": [], "total": {"bans": 0, "packets": 0, "bytes": 0}}
    path = target.att.pin(contract.PIN_BANS)
    rule_of = {r.slot: r.id for r in Current.read(target).rules}
    now = now_ns()
    bans = []
    with libbpf.opened(path) as fd:
        entries = libbpf.map_lookup_batch(fd, contract.BAN_KEY.size, contract.BAN.size, contract.BAN_ENTRIES)
        for key, value in entries:
            family, raw = contract.BAN_KEY.unpack(key)
            expires, added, packets, nbytes, slot, _ = contract.BAN.unpack(value)
            if expires <= now:
                libbpf.map_delete(fd, key)
                continue
            bans.append({"address": _address(family, raw), "seconds_left": -(-(expires - now) // NS),
                         "packets": packets, "bytes": nbytes,
                         "rule": rule_of.get(slot) if slot != contract.NO_RULE else None})
    bans.sort(key=lambda b: (b["seconds_left"], b["address"]))
    return {"ifname": ifname, "bans": bans,
            "total": {"bans": len(bans), "packets": sum(b["packets"] for b in bans),
                      "bytes": sum(b["bytes"] for b in bans)}}


def totals(target) -> dict | None:
    """The live bans of a managed interface and the frames they dropped
    (for stats; nothing is removed), or None when it has no ban list."""
    return totals_at(target.att.pin(contract.PIN_BANS)) if _has_list(target) else None


def totals_at(path: str) -> dict:
    """Live bans, and the frames and bytes they dropped, of the ban list at path."""
    now = now_ns()
    out = {"bans": 0, "packets": 0, "bytes": 0}
    with libbpf.opened(path) as fd:
        for _, value in libbpf.map_lookup_batch(fd, contract.BAN_KEY.size, contract.BAN.size,
                                                contract.BAN_ENTRIES):
            expires, _, packets, nbytes, _, _ = contract.BAN.unpack(value)
            if expires > now:
                out["bans"] += 1
                out["packets"] += packets
                out["bytes"] += nbytes
    return out


def add(app, ifname: str, address: str, seconds: int) -> dict:
    """Ban address for seconds (replacing a ban it has)."""
    family, raw = parse_address(address)
    if not 1 <= seconds <= BLOCK_MAX_S:
        raise BadInput(f"--for must be from 1s to 3650 days; got {show_duration(seconds)}")
    privileges.require_attach(f"changing the ban list of {ifname}")
    with app.state.lock():
        path, compiled = _with_list(app, ifname)
        now = now_ns()
        with libbpf.opened(path) as fd:
            libbpf.map_update(fd, contract.BAN_KEY.pack(family, raw),
                              contract.BAN.pack(now + seconds * NS, now, 0, 0, contract.NO_RULE, 0))
    return {"ifname": ifname, "address": _address(family, raw), "seconds": seconds, "compiled": compiled}


def delete(app, ifname: str, address: str) -> dict:
    family, raw = parse_address(address)
    privileges.require_attach(f"changing the ban list of {ifname}")
    with app.state.lock():
        target = _managed(app, ifname)
        if _has_list(target):
            with libbpf.opened(target.att.pin(contract.PIN_BANS)) as fd:
                if libbpf.map_delete(fd, contract.BAN_KEY.pack(family, raw)):
                    return {"ifname": ifname, "address": _address(family, raw)}
    raise BadInput(f"{ifname} has no ban on {_address(family, raw)}; `xdpctl ban list {ifname}` shows them")
