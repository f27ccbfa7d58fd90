"""Steering on the machine: the interfaces and CPUs redirect rules name, and
the devmap and cpumap the program redirects through.

- resolve(): a rule's targets named on the command line or in a file become
  interfaces of this namespace (name and ifindex), checked to exist, to be
  up, and to be able to transmit XDP frames; a CPU is checked to exist and
  to be online. A problem is one line (BadInput) and nothing changes.
- prepare(): the devmap and cpumap are made and pinned by xdpctl before a
  program that uses them is compiled (BCC opens them at their pins).
- write_generation(): a rule set's targets go into its generation's part of
  the devmap (entries gen * DEVMAP_GEN + offset, where the decisions point),
  before the flip that makes it live; so a frame is steered by the old rule
  set or the new one, never by a mix. CPUs a rule set uses get their cpumap
  entry (one queue per CPU) before the flip; after_flip() removes those no
  rule uses any more.
- problems(): targets that are gone, renamed, down, or CPUs offline, for
  status and doctor. A target is the interface with the recorded ifindex
  *and* name: one that was renamed, or deleted and made again, is no longer
  sent to once the devmap is next written (until then the kernel's devmap
  entry, which follows the ifindex, still is); a deleted one leaves the
  devmap at once (the kernel removes its entries), and its frames are
  counted as aborted.
"""

from __future__ import annotations

import contextlib
import os
import struct

from ..datapath import contract
from ..datapath.layout import Layout
from ..errors import BadInput, InterfaceNotFound
from ..kernel import cpus, kernel_version, libbpf
from ..kernel.netlink import NETDEV_XDP_ACT_NDO_XMIT, Link
from ..rules import actions
from ..rules.actions import Steer, Target

_KEY = struct.Struct("<I")
STEERING_DOC = "docs/rules.md#steering-and-load-spreading"
# From 6.6 a veth says whether its peer takes redirected frames (an XDP
# program or GRO there) in its xdp-features; before, xdpctl sees only the
# peer's XDP program.
VETH_FEATURES_SINCE = (6, 6)


# --- checking what a rule names ---------------------------------------------------


def _veth_features_tell() -> bool:
    version = kernel_version.parse(kernel_version.running_release())
    return version is not None and version[:2] >= VETH_FEATURES_SINCE


def cannot_transmit(app, link: Link, generic: bool = False, tx: bool = False) -> str | None:
    """Why link cannot take frames redirected to it from XDP (tx: or send
    back frames its own program returns XDP_TX for), or None. generic: from
    a program in generic mode, which sends through the stack's own transmit
    path and needs no more than up."""
    name = link.ifname
    if not link.up:
        return f"{name} is down; bring it up (`ip link set {name} up`)"
    if generic:
        return None
    if link.kind == "veth":
        peer = app.netlink.peer(link)
        if peer is not None and not peer.carrier:
            return f"{name} has no carrier: its veth peer {peer.ifname} is down; bring that up"
        if not link.carrier:
            return f"{name} has no carrier: its veth peer is down; bring that up"
        if peer is not None and peer.xdp is not None:
            return None
        who = peer.ifname if peer is not None else "its peer"
        if tx:
            # XDP_TX queues the frame for the peer but wakes the peer's NAPI
            # only when an XDP program runs there: GRO alone leaves it queued.
            return (f"{name} is a veth whose peer ({who}) runs no XDP program: frames a veth's XDP program sends "
                    f"back reach its peer only when an XDP program runs there (GRO is not enough). Attach one "
                    f"to {who} (`xdpctl attach {who}` in its namespace); see {STEERING_DOC}")
        features = app.netlink.xdp_features(link.ifindex) if _veth_features_tell() else None
        if features is not None and features & NETDEV_XDP_ACT_NDO_XMIT:
            return None  # GRO on the peer: the kernel says it will take them
        gro = f", or turn GRO on there (`ethtool -K {who} gro on`)" if _veth_features_tell() else ""
        return (f"{name} is a veth whose peer ({who}) runs no XDP program: Linux drops frames redirected into a "
                f"veth unless its peer receives in NAPI mode. Attach an XDP program to {who} (`xdpctl attach "
                f"{who}` in its namespace){gro}; see {STEERING_DOC}")
    if not link.carrier:
        return f"{name} has no carrier (its cable or its other end is down)"
    features = app.netlink.xdp_features(link.ifindex)
    if features is not None and not features & NETDEV_XDP_ACT_NDO_XMIT:
        kind = f" ({link.kind})" if link.kind else ""
        return (f"{name}{kind} cannot transmit XDP frames: its driver does not implement ndo_xdp_xmit; "
                f"choose another target, or see {STEERING_DOC}")
    return None  # the kernel cannot say (before 6.3): the driver will tell by dropping


def resolve(app, ifname: str, action: int, steer: Steer, label=lambda k: "--" + k, mode: str = "native") -> Steer:
    """steer with its targets resolved in this namespace and checked, and its
    CPU checked (BadInput when one cannot be used). For tx, ifname itself
    must be able to send XDP frames back. mode: the program's XDP mode."""
    generic = mode == "generic"
    if action == contract.ACTION_TX:
        why = cannot_transmit(app, app.netlink.link(ifname), generic, tx=True)
        if why:
            raise BadInput(f"tx sends frames back out of {ifname}, but {why.replace(ifname + ' ', 'it ', 1)}")
    if action == contract.ACTION_REDIRECT:
        out = []
        for t in steer.to:
            if t.name == ifname:
                raise BadInput(f"{label('to')} {t.name} is {ifname} itself: to send frames back out of the "
                               "interface they came in on, use the tx action")
            try:
                link = app.netlink.link(t.name)
            except InterfaceNotFound:
                raise BadInput(f"{label('to')} {t.name}: no interface of that name in {ifname}'s network "
                               "namespace; a redirect target must be in the same namespace (`ip link` lists "
                               "them)") from None
            why = cannot_transmit(app, link, generic)
            if why:
                raise BadInput(f"{label('to')} {why}")
            out.append(Target(link.ifname, link.ifindex))
        return Steer(to=tuple(out))
    if action == contract.ACTION_REDIRECT_CPU:
        check_cpu(steer.cpu, label)
    return steer


def check_cpu(cpu: int, label=lambda k: "--" + k) -> None:
    possible = cpus.possible()
    if cpu not in possible:
        raise BadInput(f"{label('cpu')} {cpu}: this machine has no CPU {cpu} (its CPUs are "
                       f"{_span(possible)})")
    online = cpus.online()
    if cpu not in online:
        raise BadInput(f"{label('cpu')} {cpu}: CPU {cpu} is offline (online: {_span(online)}); bring it online "
                       f"(`echo 1 > /sys/devices/system/cpu/cpu{cpu}/online`) or choose another")


def _span(ids: set[int]) -> str:
    ordered = sorted(ids)
    if ordered and ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{ordered[0]}-{ordered[-1]}"
    return ", ".join(map(str, ordered)) or "none"


# --- the maps ----------------------------------------------------------------------


def prepare(directory: str, layout: Layout) -> None:
    """Make and pin the devmap and cpumap layout's actions need, where they
    are not pinned yet: before the compile, so that BCC opens them."""
    wanted = []
    if layout.actions & contract.ACTS_REDIRECT:
        wanted.append((contract.PIN_DEVMAP, libbpf.BPF_MAP_TYPE_DEVMAP, contract.DEVMAP_ENTRIES))
    if layout.actions & contract.ACTS_CPU:
        wanted.append((contract.PIN_CPUMAP, libbpf.BPF_MAP_TYPE_CPUMAP, libbpf.possible_cpus()))
    for pin, map_type, entries in wanted:
        path = os.path.join(directory, pin)
        if os.path.exists(path):
            continue
        fd = libbpf.map_create(map_type, f"xdpctl_{pin}", 4, 4, entries)
        try:
            libbpf.obj_pin(fd, path)
        finally:
            os.close(fd)


def _live(app, target: Target) -> bool:
    """The target is still the interface the rule was given: its ifindex
    exists and carries the recorded name."""
    link = app.netlink.link_by_index(target.ifindex)
    return link is not None and link.ifname == target.name


def write_generation(app, directory: str, layout: Layout, gen: int, rules, before=()) -> None:
    """Put generation gen's redirect targets in the devmap and its CPUs in
    the cpumap, before the flip that makes gen live. before: the target
    lists gen held (their devmap entries past the new ones are cleared)."""
    if layout.actions & contract.ACTS_REDIRECT:
        base = (gen & 1) * contract.DEVMAP_GEN
        entries: dict[int, int] = {}
        for group, offset in actions.devmap_offsets(rules).items():
            for i, t in enumerate(group):
                if _live(app, t):  # a target that is gone stays empty: its frames are aborted
                    entries[base + offset + i] = t.ifindex
        used = actions.devmap_entries(rules)
        was = sum(len(group) for group in set(before))
        stale = range(base + used, base + max(used, was))
        with libbpf.opened(os.path.join(directory, contract.PIN_DEVMAP)) as fd:
            for key in range(base, base + used):
                if key in entries:
                    libbpf.map_update(fd, _KEY.pack(key), _KEY.pack(entries[key]))
                else:
                    libbpf.map_delete(fd, _KEY.pack(key))
            for key in stale:
                libbpf.map_delete(fd, _KEY.pack(key))
    if layout.actions & contract.ACTS_CPU:
        queues = {r.steer.cpu: r.steer.queue_size for r in rules if r.action == contract.ACTION_REDIRECT_CPU}
        with libbpf.opened(os.path.join(directory, contract.PIN_CPUMAP)) as fd:
            for cpu, queue in sorted(queues.items()):
                if libbpf.map_lookup(fd, _KEY.pack(cpu), 4) != _KEY.pack(queue):
                    libbpf.map_update(fd, _KEY.pack(cpu), _KEY.pack(queue))


def after_flip(directory: str, layout: Layout, rules) -> None:
    """Once rules are live: the CPUs none of them uses lose their cpumap
    entry (and its kernel thread)."""
    if not layout.actions & contract.ACTS_CPU:
        return
    used = {r.steer.cpu for r in rules if r.action == contract.ACTION_REDIRECT_CPU}
    with contextlib.suppress(FileNotFoundError), libbpf.opened(os.path.join(directory, contract.PIN_CPUMAP)) as fd:
        for cpu in range(libbpf.possible_cpus()):
            if cpu not in used and libbpf.map_lookup(fd, _KEY.pack(cpu), 4) is not None:
                libbpf.map_delete(fd, _KEY.pack(cpu))


# --- what status and doctor say ---------------------------------------------------


def problems(app, ifname: str, rules) -> list[dict]:
    """Each redirect target that cannot be sent to now: the rule, the target,
    and a sentence that says what is wrong and what to do."""
    out = []
    online = None
    for r in sorted(rules, key=lambda r: r.order):
        if r.action == contract.ACTION_REDIRECT:
            for t in r.steer.to:
                link = app.netlink.link_by_index(t.ifindex)
                if link is None or link.ifname != t.name:
                    now = f"ifindex {t.ifindex} is now {link.ifname}" if link is not None else "it is gone"
                    try:
                        again = app.netlink.link(t.name)
                    except InterfaceNotFound:
                        again = None
                    hint = (f"an interface named {t.name} exists again (ifindex {again.ifindex}): delete and add "
                            "the rule again (or apply the file again) to send to it" if again is not None
                            else "its frames are dropped and counted as aborted")
                    message = f"rule {r.id} redirects to {t.name} (ifindex {t.ifindex}), but {now}; {hint}"
                    out.append({"rule": r.id, "target": t.name, "ifindex": t.ifindex, "problem": "gone",
                                "message": message})
                    continue
                why = cannot_transmit(app, link)
                if why:
                    out.append({"rule": r.id, "target": t.name, "ifindex": t.ifindex, "problem": "unusable",
                                "message": f"rule {r.id} redirects to {t.name}, but {why}"})
        elif r.action == contract.ACTION_REDIRECT_CPU:
            online = cpus.online() if online is None else online
            if r.steer.cpu not in online:
                out.append({"rule": r.id, "cpu": r.steer.cpu, "problem": "offline",
                            "message": f"rule {r.id} redirects to CPU {r.steer.cpu}, which is offline now; bring it "
                                       f"online (`echo 1 > /sys/devices/system/cpu/cpu{r.steer.cpu}/online`)"})
    return out
