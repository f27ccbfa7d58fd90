"""The only module that talks to pyroute2: links, XDP attach and detach,
TC (the clsact qdisc and direct-action BPF filters on egress), addresses and
neighbours, and network namespaces.

XDP is set through the nested IFLA_XDP attributes, because pyroute2's xdp_fd=
shortcut sets no flags and xdpctl needs the mode, no-replace and
compare-and-swap flags. Kernel refusals become typed errors here, carrying
the kernel's own explanation (netlink extended ack) where it gives one.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from typing import Iterator

from pyroute2 import IPRoute, netns
from pyroute2.netlink import NLM_F_REQUEST, genlmsg
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import AsyncGenericNetlinkSocket, GenericNetlinkSocket
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD

from .. import validate
from ..errors import (
    BadInput,
    InterfaceNotFound,
    KernelError,
    MissingCapability,
    ModeError,
    ProgramChanged,
    XdpctlError,
)

# include/uapi/linux/if_link.h
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4

MODE_FLAGS = {
    "native": XDP_FLAGS_DRV_MODE,
    "generic": XDP_FLAGS_SKB_MODE,
    "offload": XDP_FLAGS_HW_MODE,
}
# IFLA_XDP_ATTACHED as pyroute2 decodes it, to xdpctl's mode names.
_ATTACHED = {"xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload", "xdpmulti": "multi"}
_MODE_PROG_ATTR = {
    "native": "IFLA_XDP_DRV_PROG_ID",
    "generic": "IFLA_XDP_SKB_PROG_ID",
    "offload": "IFLA_XDP_HW_PROG_ID",
}

NETNS_RUN_DIR = "/var/run/netns"

# include/uapi/linux/pkt_sched.h: the clsact qdisc and its two hooks.
TC_H_CLSACT = 0xFFFFFFF1  # the qdisc's parent (TC_H_INGRESS's value)
TC_QDISC_HANDLE = 0xFFFF0000  # ffff: - clsact's handle, and the older ingress qdisc's
TC_INGRESS = 0xFFFFFFF2  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
TC_EGRESS = 0xFFFFFFF3  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)
ETH_P_ALL = 0x0003
# include/uapi/linux/pkt_cls.h: attributes of a bpf filter (pyroute2 decodes
# neither the program's id nor its tag, so TCA_OPTIONS is read here).
TCA_BPF_NAME = 7
TCA_BPF_ID = 11


class AlreadyAttached(XdpctlError):
    """The no-replace attach found a program there (a race with another tool)."""


@dataclass(frozen=True)
class Xdp:
    """The XDP program(s) on a link. mode is 'multi' when more than one is."""

    mode: str
    prog_id: int
    prog_ids: dict[str, int]


IFF_UP = 0x1
IFF_LOWER_UP = 0x10000  # the carrier: for a veth, its peer is up too

# The netdev generic netlink family (Linux 6.3 and newer): what XDP a
# device supports (NETDEV_A_DEV_XDP_FEATURES, enum netdev_xdp_act).
NETDEV_CMD_DEV_GET = 1
NETDEV_XDP_ACT_NDO_XMIT = 1 << 2  # it can transmit frames redirected to it


@dataclass(frozen=True)
class TcFilter:
    """A filter on a clsact hook. prog_id and name are a bpf filter's (0 and
    "" for other kinds)."""

    prio: int
    handle: int
    kind: str
    protocol: int
    prog_id: int = 0
    name: str = ""


class TcUnavailable(BadInput):
    """TC cannot carry xdpctl's egress program on this interface; nothing was changed."""


@dataclass(frozen=True)
class Link:
    ifindex: int
    ifname: str
    mtu: int
    kind: str
    xdp: Xdp | None
    flags: int = 0  # IFF_*

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def carrier(self) -> bool:
        return bool(self.flags & IFF_LOWER_UP)


def _name(raw) -> str:
    """An interface name as text: pyroute2 hands over the bytes of a name
    that is not UTF-8 (the kernel allows any byte but '/', ':' and spaces);
    decoded with surrogateescape, it is a str like every other name, exact,
    and validate.ifname refuses it by name in one line."""
    return raw.decode("utf-8", errors="surrogateescape") if isinstance(raw, bytes) else raw


def _decode_link(msg) -> Link:
    xdp = None
    attrs = dict((msg.get_attr("IFLA_XDP") or {}).get("attrs", []))
    attached = attrs.get("IFLA_XDP_ATTACHED")
    if attached:
        ids = {m: attrs[a] for m, a in _MODE_PROG_ATTR.items() if attrs.get(a)}
        mode = _ATTACHED.get(attached, attached)
        prog_id = attrs.get("IFLA_XDP_PROG_ID") or (ids.get(mode) if mode in ids else 0)
        if not prog_id and ids:
            prog_id = next(iter(ids.values()))
        xdp = Xdp(mode=mode, prog_id=prog_id or 0, prog_ids=ids)
    kind = ""
    info = msg.get_attr("IFLA_LINKINFO")
    if info:
        kind = info.get_attr("IFLA_INFO_KIND") or ""
    return Link(
        ifindex=msg["index"],
        ifname=_name(msg.get_attr("IFLA_IFNAME")),
        mtu=msg.get_attr("IFLA_MTU") or 0,
        kind=kind,
        xdp=xdp,
        flags=msg["flags"] or 0,
    )


def _bpf_options(msg) -> tuple[int, str]:
    """(program id, name) of a bpf filter message, from its TCA_OPTIONS bytes."""
    opts = msg.get_attr("TCA_OPTIONS")
    if opts is None or not hasattr(opts, "data"):
        return 0, ""
    raw = bytes(opts.data[opts.offset + 4 : opts.offset + opts.length])
    prog_id, name, off = 0, "", 0
    while off + 4 <= len(raw):
        length, kind = struct.unpack_from("<HH", raw, off)
        if length < 4:
            break
        body = raw[off + 4 : off + length]
        if kind & 0x3FFF == TCA_BPF_ID and len(body) >= 4:
            prog_id = struct.unpack_from("<I", body)[0]
        elif kind & 0x3FFF == TCA_BPF_NAME:
            name = body.split(b"\0", 1)[0].decode(errors="replace")
        off += (length + 3) & ~3
    return prog_id, name


def _extack(exc: NetlinkError) -> str:
    text = str(exc.args[1]) if len(exc.args) > 1 else ""
    return "" if text == os.strerror(exc.code) else text


def _netns_path(name: str) -> str:
    validate.netns(name)  # never "" for the current namespace: that is None
    return name if "/" in name else os.path.join(NETNS_RUN_DIR, name)


def enter_netns(name: str) -> None:
    """Move this process into a named network namespace (ip netns add NAME)."""
    path = _netns_path(name)
    if not os.path.exists(path):
        raise BadInput(f"no network namespace named {name!r}; `ip netns list` lists them")
    try:
        netns.setns(path, flags=0)
    except OSError as exc:
        if exc.errno == errno.EPERM:
            raise MissingCapability(f"entering network namespace {name}", "CAP_SYS_ADMIN") from exc
        raise KernelError(f"cannot enter network namespace {name}: {exc.strerror}") from exc


def netns_names() -> list[str]:
    return sorted(netns.listnetns())


def netns_create(name: str) -> None:
    netns.create(name)


def netns_remove(name: str) -> None:
    try:
        netns.remove(name)
    except FileNotFoundError:
        pass


class Netlink:
    """An rtnetlink socket in the current (or a named) network namespace."""

    def __init__(self, namespace: str | None = None):
        self._namespace = namespace
        try:
            if namespace is not None:
                if not os.path.exists(_netns_path(namespace)):
                    raise BadInput(f"no network namespace named {namespace!r}; `ip netns list` lists them")
                # flags=0: never create the namespace (pyroute2's default would).
                self._ipr = IPRoute(ext_ack=True, netns=namespace, flags=0)
            else:
                self._ipr = IPRoute(ext_ack=True)
        except OSError as exc:
            raise KernelError(f"cannot open a netlink socket: {exc.strerror or exc}") from exc

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- links ---------------------------------------------------------------

    def link(self, ifname: str) -> Link:
        validate.ifname(ifname)
        try:
            msgs = self._ipr.get_links(ifname=ifname)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                raise InterfaceNotFound(ifname) from exc
            raise KernelError(f"cannot read interface {ifname}: {exc}") from exc
        if not msgs:
            raise InterfaceNotFound(ifname)
        return _decode_link(msgs[0])

    def link_by_index(self, ifindex: int) -> Link | None:
        try:
            msgs = self._ipr.get_links(ifindex)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise KernelError(f"cannot read interface {ifindex}: {exc}") from exc
        return _decode_link(msgs[0]) if msgs else None

    def links(self) -> list[Link]:
        return sorted((_decode_link(m) for m in self._ipr.get_links()), key=lambda l: l.ifindex)

    def xdp_features(self, ifindex: int) -> int | None:
        """What XDP an interface of this socket's namespace supports (see
        the module's xdp_features)."""
        with in_netns(self._namespace):
            return xdp_features(ifindex)

    def ipv4_addresses(self, ifindex: int) -> list[str]:
        return [m.get_attr("IFA_ADDRESS") for m in self._ipr.get_addr(family=2, index=ifindex)]

    def mac_address(self, ifindex: int) -> str:
        msgs = self._ipr.get_links(ifindex)
        return msgs[0].get_attr("IFLA_ADDRESS")

    # --- XDP -----------------------------------------------------------------

    def xdp_set(
        self,
        link: Link,
        fd: int,
        mode: str,
        *,
        noexist: bool = False,
        expected_fd: int | None = None,
    ) -> None:
        """Attach fd (or detach, with fd -1) in mode.

        noexist: fail if any program is attached (the kernel checks it).
        expected_fd: replace only if the attached program is this one.
        """
        flags = MODE_FLAGS[mode]
        if noexist:
            flags |= XDP_FLAGS_UPDATE_IF_NOEXIST
        attrs = [("IFLA_XDP_FD", fd)]
        if expected_fd is not None:
            flags |= XDP_FLAGS_REPLACE
            attrs.append(("IFLA_XDP_EXPECTED_FD", expected_fd))
        attrs.append(("IFLA_XDP_FLAGS", flags))
        try:
            self._ipr.link("set", index=link.ifindex, xdp={"attrs": attrs})
        except NetlinkError as exc:
            # veth refuses XDP while its *peer's* MTU is too large: name that one.
            peer = self._peer(link) if "peer" in _extack(exc).lower() else None
            raise self._xdp_error(exc, link, mode, peer) from exc

    def _peer(self, link: Link) -> tuple[str, int] | None:
        """(name, MTU) of a veth's peer, in whichever namespace it is; None
        when the kernel does not say."""
        peer = self.peer(link)
        return (peer.ifname, peer.mtu) if peer is not None else None

    def peer(self, link: Link) -> Link | None:
        """A veth's peer (its XDP program too), in whichever namespace it
        is; None when the kernel does not say."""
        try:
            msg = self._ipr.get_links(link.ifindex)[0]
            index, nsid = msg.get_attr("IFLA_LINK"), msg.get_attr("IFLA_LINK_NETNSID")
            if not index:
                return None
            where = {} if nsid is None else {"IFLA_IF_NETNSID": nsid}  # the peer's namespace
            return _decode_link(self._ipr.link("get", index=index, **where)[0])
        except (NetlinkError, OSError, IndexError):
            return None

    @staticmethod
    def _xdp_error(exc: NetlinkError, link: Link, mode: str, peer: tuple[str, int] | None = None) -> XdpctlError:
        code, why = exc.code, _extack(exc)
        name = link.ifname
        if code == errno.EPERM:
            return MissingCapability(f"attaching XDP to {name}", "CAP_NET_ADMIN")
        if code == errno.ENODEV:
            return InterfaceNotFound(name)
        if code == errno.EBUSY:
            return AlreadyAttached(f"{name} already carries an XDP program")
        if code == errno.EEXIST and "expected" in why:
            return ProgramChanged(name)
        if code == errno.EEXIST:
            return ModeError(
                f"{name} already carries an XDP program in another mode ({why or 'mode conflict'}); "
                "one interface cannot mix native and generic XDP"
            )
        if code == errno.EOPNOTSUPP and mode == "native":
            return ModeError(
                f"the driver of {name} ({link.kind or 'unknown kind'}) does not support native XDP; "
                "use --mode generic"
            )
        if code == errno.EOPNOTSUPP:
            return ModeError(f"{name} does not support XDP in {mode} mode" + (f": {why}" if why else ""))
        if code in (errno.ERANGE, errno.EINVAL) and "MTU" in why.upper() and "peer" in why.lower():
            who = f"the veth peer of {name}, {peer[0]}, has MTU {peer[1]}," if peer else \
                f"the veth peer of {name} has an MTU"
            return ModeError(
                f"{who} too large for {mode} XDP on {name} ({why}); lower the peer's MTU "
                "or use --mode generic"
            )
        if code in (errno.ERANGE, errno.EINVAL) and "MTU" in why.upper():
            return ModeError(
                f"{name} has MTU {link.mtu}, too large for {mode} XDP ({why}); lower the MTU "
                "or use --mode generic"
            )
        detail = why or os.strerror(code)
        return KernelError(f"the kernel refused XDP on {name} in {mode} mode: {detail}")

    # --- TC: the clsact qdisc and BPF filters on egress -----------------------

    def tc_qdisc_kind(self, link: Link) -> str | None:
        """The kind of the qdisc at ffff: ("clsact", the older "ingress"), or None."""
        try:
            msgs = self._ipr.get_qdiscs(index=link.ifindex)
        except NetlinkError as exc:
            raise self._tc_error(exc, link, "reading the qdiscs of") from exc
        for msg in msgs:
            if msg["index"] == link.ifindex and msg["handle"] == TC_QDISC_HANDLE:
                return msg.get_attr("TCA_KIND")
        return None

    def clsact_add(self, link: Link) -> None:
        """Create the clsact qdisc (the kernel refuses when one is there)."""
        try:
            self._ipr.tc("add", "clsact", link.ifindex)
        except NetlinkError as exc:
            raise self._tc_error(exc, link, "adding a clsact qdisc to") from exc

    def clsact_del(self, link: Link) -> None:
        try:
            self._ipr.tc("del", "clsact", link.ifindex)
        except NetlinkError as exc:
            if exc.code in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                return  # gone already
            raise self._tc_error(exc, link, "removing the clsact qdisc of") from exc

    def tc_filters(self, link: Link, parent: int = TC_EGRESS) -> list[TcFilter]:
        """The filters on a clsact hook (egress by default); [] without clsact."""
        try:
            msgs = list(self._ipr.get_filters(index=link.ifindex, parent=parent))
        except NetlinkError as exc:
            if exc.code in (errno.EINVAL, errno.ENOENT):
                return []  # no clsact qdisc: no hook
            raise self._tc_error(exc, link, "reading the TC filters of") from exc
        out = []
        for msg in msgs:
            if not msg["handle"] or msg["parent"] != parent:
                continue  # the message naming a priority's classifier, not a filter
            kind = msg.get_attr("TCA_KIND") or ""
            prog_id, name = _bpf_options(msg) if kind == "bpf" else (0, "")
            out.append(TcFilter(msg["info"] >> 16, msg["handle"], kind, socket.ntohs(msg["info"] & 0xFFFF),
                                prog_id, name))
        return out

    def egress_filter_add(self, link: Link, fd: int, prio: int, handle: int, name: str) -> None:
        """Add a direct-action bpf filter running fd on egress, at exactly
        (prio, handle): the kernel refuses (EEXIST) when one is there."""
        try:
            self._ipr.tc("add-filter", "bpf", link.ifindex, handle, fd=fd, name=name, parent=TC_EGRESS,
                         prio=prio, protocol=ETH_P_ALL, classid=1, direct_action=True)
        except NetlinkError as exc:
            raise self._tc_error(exc, link, "adding a TC egress filter to") from exc

    def egress_filter_del(self, link: Link, prio: int, handle: int) -> bool:
        """Remove the bpf filter at (prio, handle) on egress; False when none was there."""
        try:
            self._ipr.tc("del-filter", "bpf", link.ifindex, handle, parent=TC_EGRESS, prio=prio,
                         protocol=ETH_P_ALL)
        except NetlinkError as exc:
            if exc.code in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                return False
            raise self._tc_error(exc, link, "removing a TC egress filter from") from exc
        return True

    @staticmethod
    def _tc_error(exc: NetlinkError, link: Link, doing: str) -> XdpctlError:
        code, why = exc.code, _extack(exc)
        if code == errno.EPERM:
            return MissingCapability(f"{doing} {link.ifname}", "CAP_NET_ADMIN")
        if code == errno.ENODEV:
            return InterfaceNotFound(link.ifname)
        if code in (errno.ENOENT, errno.EOPNOTSUPP) and "kind" in why.lower():
            return TcUnavailable(
                f"the kernel cannot attach TC programs to {link.ifname} ({why}): it needs the clsact qdisc and "
                "the bpf classifier (CONFIG_NET_SCH_INGRESS, CONFIG_NET_CLS_BPF); --established needs them")
        detail = why or os.strerror(code)
        return KernelError(f"the kernel refused {doing} {link.ifname}: {detail}")

    # --- lab plumbing (veth pairs, addresses, neighbours) ---------------------

    def veth_create(self, name: str, peer: str, peer_netns: str | None = None) -> None:
        peer_spec: dict = {"ifname": peer}
        if peer_netns:
            peer_spec["net_ns_fd"] = peer_netns
        self._ipr.link("add", ifname=name, kind="veth", peer=peer_spec)

    def link_up(self, ifname: str) -> None:
        self._ipr.link("set", index=self.link(ifname).ifindex, state="up")

    def link_set_address(self, ifname: str, mac: str) -> None:
        self._ipr.link("set", index=self.link(ifname).ifindex, address=mac)

    def link_set_mtu(self, ifname: str, mtu: int) -> None:
        self._ipr.link("set", index=self.link(ifname).ifindex, mtu=mtu)

    def link_delete(self, ifname: str) -> bool:
        try:
            self._ipr.link("del", index=self.link(ifname).ifindex)
        except (InterfaceNotFound, NetlinkError):
            return False
        return True

    def addr_add(self, ifname: str, cidr: str) -> None:
        iface = ipaddress.ip_interface(cidr)
        self._ipr.addr(
            "add",
            index=self.link(ifname).ifindex,
            address=str(iface.ip),
            prefixlen=iface.network.prefixlen,
            family=10 if iface.version == 6 else 2,
            # IFA_F_NODAD (0x02): usable at once. Without it (0x80 was here, IFA_F_PERMANENT
            # by mistake) an IPv6 address was tentative for a second or two after the link
            # came up, and a connect() from it then failed with EADDRNOTAVAIL.
            flags=IFA_F_NODAD if iface.version == 6 else 0,
        )

    def neigh_add(self, ifname: str, address: str, mac: str) -> None:
        ip = ipaddress.ip_address(address)
        self._ipr.neigh(
            "replace",
            dst=str(ip),
            lladdr=mac,
            ifindex=self.link(ifname).ifindex,
            state=0x80,  # NUD_PERMANENT: never resolved, so no ARP or NS
            family=10 if ip.version == 6 else 2,
        )


class _netdev_msg(genlmsg):
    """The netdev family's device messages (include/uapi/linux/netdev.h)."""

    prefix = "NETDEV_A_DEV_"
    nla_map = (
        ("NETDEV_A_DEV_UNSPEC", "none"),
        ("NETDEV_A_DEV_IFINDEX", "uint32"),
        ("NETDEV_A_DEV_PAD", "none"),
        ("NETDEV_A_DEV_XDP_FEATURES", "uint64"),
    )


class _AsyncNetdevSocket(AsyncGenericNetlinkSocket):
    module_err_level = "debug"  # a kernel without the family is an answer, not an error to log


class _NetdevSocket(GenericNetlinkSocket):
    async_class = _AsyncNetdevSocket


def xdp_features(ifindex: int) -> int | None:
    """What XDP an interface of this namespace supports (NETDEV_XDP_ACT_*
    bits), or None where the kernel cannot say (before Linux 6.3, which has
    no netdev family)."""
    try:
        sock = _NetdevSocket()
    except OSError as exc:
        raise KernelError(f"cannot open a generic netlink socket: {exc.strerror or exc}") from exc
    try:
        try:
            sock.bind("netdev", _netdev_msg)
        except NetlinkError as exc:
            if exc.code in (errno.ENOENT, errno.ENOTSUP, errno.EOPNOTSUPP):
                return None
            raise KernelError(f"cannot ask the kernel about interface {ifindex}: {exc}") from exc
        msg = _netdev_msg()
        msg["cmd"] = NETDEV_CMD_DEV_GET
        msg["version"] = 1
        msg["attrs"].append(("NETDEV_A_DEV_IFINDEX", ifindex))
        try:
            replies = list(sock.nlm_request(msg, msg_type=sock.prid, msg_flags=NLM_F_REQUEST))
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                raise InterfaceNotFound(f"ifindex {ifindex}") from exc
            raise KernelError(f"cannot ask the kernel about interface {ifindex}: {exc}") from exc
        for reply in replies:
            features = reply.get_attr("NETDEV_A_DEV_XDP_FEATURES")
            if features is not None:
                return features
        return None
    finally:
        sock.close()


@contextlib.contextmanager
def in_netns(namespace: str | None) -> Iterator[None]:
    """Run the body with this thread in a network namespace (never creating it)."""
    if namespace is None:
        yield
        return
    try:
        fd = os.open(_netns_path(namespace), os.O_RDONLY)
    except FileNotFoundError:
        raise BadInput(f"no network namespace named {namespace!r}; `ip netns list` lists them") from None
    try:
        netns.pushns(fd)
        try:
            yield
        finally:
            netns.popns()
    finally:
        os.close(fd)


def write_sysctl_in(namespace: str | None, key: str, value: str) -> None:
    """Write /proc/sys/<key> as seen from a network namespace."""
    with in_netns(namespace), open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)


def socket_in(namespace: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside a network namespace (sockets keep theirs)."""
    with in_netns(namespace):
        return socket.socket(family, kind, proto)
