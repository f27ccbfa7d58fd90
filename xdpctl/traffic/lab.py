"""A veth lab: a pair whose host end is where XDP gets attached, and whose
peer sits in the lab's own network namespace, from where frames are sent.

Everything about a lab is derived from what exists on the machine, so a
fresh process finds it (`xdpctl lab list`) without a state file:

    netns  xdpctl-lab-NAME        the peer's namespace; veth "peer0" inside
    link   xl-NAME                the host end (in the root namespace, or in
                                  xdpctl-lab-NAME-host for an isolated lab)

Counts are exact because nothing but the frames xdpctl sends reaches the host
end: the peer's IPv6 stack is off (no router solicitation, MLD or DAD), both
ends hold static (permanent) neighbour entries (no ARP, no neighbour
discovery), and the peer's IPv4 address exists only for frames' sake.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from dataclasses import dataclass
from typing import Iterator

from ..kernel import netlink
from .endpoints import Endpoints
from ..errors import BadInput, XdpctlError
from ..lifecycle.state import State

NETNS_PREFIX = "xdpctl-lab-"
HOST_PREFIX = "xl-"
PEER_IF = "peer0"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,11}$")
MAX_LABS = 250


@dataclass(frozen=True)
class Lab:
    name: str
    index: int
    host_netns: str | None  # None: the root namespace

    @property
    def netns(self) -> str:
        return NETNS_PREFIX + self.name

    @property
    def host_if(self) -> str:
        return HOST_PREFIX + self.name

    @property
    def peer_if(self) -> str:
        return PEER_IF

    @property
    def host_mac(self) -> str:
        return f"02:78:64:{self.index:02x}:00:01"

    @property
    def peer_mac(self) -> str:
        return f"02:78:64:{self.index:02x}:00:02"

    @property
    def host4(self) -> str:
        return f"198.18.{self.index}.1"

    @property
    def peer4(self) -> str:
        return f"198.18.{self.index}.2"

    @property
    def host6(self) -> str:
        return f"fd78:6470:{self.index:x}::1"

    @property
    def peer6(self) -> str:
        return f"fd78:6470:{self.index:x}::2"

    def endpoints(self, **kw) -> Endpoints:
        """Frames from the peer to the host end."""
        return Endpoints(self.peer_mac, self.host_mac, self.peer4, self.host4, self.peer6, self.host6, **kw)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "netns": self.netns,
            "host_netns": self.host_netns,
            "interface": self.host_if,
            "peer_interface": self.peer_if,
            "host": {"mac": self.host_mac, "ipv4": self.host4, "ipv6": self.host6},
            "peer": {"mac": self.peer_mac, "ipv4": self.peer4, "ipv6": self.peer6},
        }


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise BadInput(
            f"lab name {name!r} must be 1-12 characters of a-z, 0-9 and '-', starting with a letter or digit"
        )
    return name


def _index_of(name: str) -> int | None:
    """A lab's index, read back from its peer's IPv4 address."""
    try:
        with netlink.Netlink(namespace=NETNS_PREFIX + name) as nl:
            link = nl.link(PEER_IF)
            for addr in nl.ipv4_addresses(link.ifindex):
                if addr.startswith("198.18."):
                    return int(addr.split(".")[2])
    except (XdpctlError, OSError):
        return None
    return None


def labs() -> list[Lab]:
    """Every lab on the machine."""
    names = set(netlink.netns_names())
    out = []
    for ns in sorted(names):
        if not ns.startswith(NETNS_PREFIX) or ns.endswith("-host"):
            continue
        name = ns[len(NETNS_PREFIX):]
        index = _index_of(name)
        if index is None:
            index = -1  # half-made; still listed, so `lab down` can remove it
        host_ns = ns + "-host" if ns + "-host" in names else None
        out.append(Lab(name, index, host_ns))
    return out


def find(name: str) -> Lab:
    validate_name(name)
    for lab in labs():
        if lab.name == name:
            return lab
    raise BadInput(f"no lab named {name!r}; `xdpctl lab list` lists them, `xdpctl lab up {name}` makes it")


LOCK_TIMEOUT_S = 60.0


@contextlib.contextmanager
def _labs_locked(timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """One xdpctl at a time makes or removes labs: the name and the index a
    lab gets are checked and claimed under an flock on the netns directory."""
    os.makedirs(netlink.NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    fd = os.open(netlink.NETNS_RUN_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise XdpctlError(f"another xdpctl held {netlink.NETNS_RUN_DIR} for {timeout:.0f} s while "
                                      "making or removing a lab; is one stuck?") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # and with it the lock


def up(name: str, isolated: bool = False) -> Lab:
    """Make a lab. isolated: put the host end in its own namespace too."""
    validate_name(name)
    with _labs_locked():
        existing = labs()
        if any(lab.name == name for lab in existing):
            raise BadInput(f"lab {name!r} exists already; `xdpctl lab down {name}` removes it")
        used = {lab.index for lab in existing}
        index = next((i for i in range(1, MAX_LABS) if i not in used), None)
        if index is None:
            raise XdpctlError(f"{MAX_LABS - 1} labs exist already; remove some with `xdpctl lab down`")
        lab = Lab(name, index, NETNS_PREFIX + name + "-host" if isolated else None)
        if lab.host_netns is None:
            with netlink.Netlink() as host:
                if any(link.ifname == lab.host_if for link in host.links()):
                    raise BadInput(f"an interface named {lab.host_if} exists already and is not a lab's")
        made: list[str] = []
        try:
            _build(lab, made)
        except BaseException as exc:
            _unmake(lab, made)  # only what this attempt made: never another's lab
            if isinstance(exc, FileExistsError):
                raise BadInput(f"lab {name!r} exists already (made meanwhile by another tool); "
                               f"`xdpctl lab down {name}` removes it") from None
            raise
    return lab


def _build(lab: Lab, made: list[str]) -> None:
    """Make the lab, appending to made what exists because of this call."""
    netlink.netns_create(lab.netns)  # fails if the name is taken: the claim
    made.append("netns")
    if lab.host_netns:
        netlink.netns_create(lab.host_netns)
        made.append("host_netns")
    # The peer's IPv6 stack goes off before its interface exists, so it never
    # sends a router solicitation, MLD report or DAD probe.
    for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
        netlink.write_sysctl_in(lab.netns, key, "1")
    with netlink.Netlink(namespace=lab.host_netns) as host:
        host.veth_create(lab.host_if, lab.peer_if, peer_netns=lab.netns)
        made.append("veth")
    configure(lab)


def _unmake(lab: Lab, made: list[str]) -> None:
    if "veth" in made and lab.host_netns is None:
        with contextlib.suppress(XdpctlError, OSError), netlink.Netlink() as host:
            host.link_delete(lab.host_if)
    if "netns" in made:
        netlink.netns_remove(lab.netns)  # takes the peer end, and so the pair, along
    if "host_netns" in made:
        netlink.netns_remove(lab.host_netns)


def configure(lab: Lab) -> None:
    """Give the lab's veth pair, once made, its addresses and static neighbours
    (so that no neighbour resolution adds frames to the counts), and bring it up."""
    with netlink.Netlink(namespace=lab.host_netns) as host:
        host.link_set_address(lab.host_if, lab.host_mac)
        host.addr_add(lab.host_if, f"{lab.host4}/24")
        host.addr_add(lab.host_if, f"{lab.host6}/64")
        host.neigh_add(lab.host_if, lab.peer4, lab.peer_mac)
        host.neigh_add(lab.host_if, lab.peer6, lab.peer_mac)
        host.link_up(lab.host_if)
    with netlink.Netlink(namespace=lab.netns) as peer:
        peer.link_set_address(lab.peer_if, lab.peer_mac)
        peer.addr_add(lab.peer_if, f"{lab.peer4}/24")
        peer.neigh_add(lab.peer_if, lab.host4, lab.host_mac)
        peer.link_up(lab.peer_if)


def _netns_ino(name: str | None) -> int:
    return os.stat(f"{netlink.NETNS_RUN_DIR}/{name}" if name else "/proc/thread-self/ns/net").st_ino


def down(lab: Lab, state: State | None = None) -> None:
    """Remove a lab: the host end, its namespaces, and any xdpctl state for
    the host end (deleting the veth takes its XDP program along)."""
    with _labs_locked():
        _down(lab, state or State())


def _down(lab: Lab, state: State) -> None:
    stale = None
    host_ns_alive = lab.host_netns is None or lab.host_netns in netlink.netns_names()
    if host_ns_alive:
        with netlink.Netlink(namespace=lab.host_netns) as host:
            try:
                ifindex = host.link(lab.host_if).ifindex
                stale = state.attachment(_netns_ino(lab.host_netns), ifindex)
            except XdpctlError:
                pass
            if lab.host_netns is None:
                host.link_delete(lab.host_if)
    netlink.netns_remove(lab.netns)
    if lab.host_netns:
        netlink.netns_remove(lab.host_netns)
    if stale is not None and stale.exists():
        with state.lock():
            stale.remove()
