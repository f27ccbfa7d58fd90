"""Rules: what a rule matches, how each value is read and checked, and how a
rule is stored (struct xdpctl_rule in the rules map).

Values come from the command line and from xdpctl.toml, so every check
raises BadInput with a sentence that says what is wrong and what is meant.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace

from ..datapath import contract
from ..datapath.layout import MAX_GENERAL_ESTABLISHED_REDIRECT
from ..errors import BadInput
from . import actions
from .actions import NO_STEER, Steer, Target

# The filtering actions; redirect and tx (rules/actions.py) steer frames too.
ACTIONS = {"pass": contract.ACTION_PASS, "drop": contract.ACTION_DROP}
ACTION_NAMES = actions.ACTION_NAMES

PROTOCOLS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
             "icmpv6": 58, "sctp": 132}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}
ETHERTYPES = {"ipv4": 0x0800, "arp": 0x0806, "ipv6": 0x86DD, "lldp": 0x88CC, "vlan": 0x8100,
              "qinq": 0x88A8}
TCP_FLAGS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20,
             "ece": 0x40, "cwr": 0x80}

PRIORITY_MAX = 65535
_DECIMAL = re.compile(r"^[0-9]+$")

# The match keys, in the order they are shown and exported.
MATCH_KEYS = ("src", "dst", "proto", "sport", "dport", "src_mac", "dst_mac", "vlan", "ethertype",
              "tcp_flags", "icmp_type", "icmp_code", "established")
KIND_OF = {
    "src": contract.KIND_SRC, "dst": contract.KIND_DST, "proto": contract.KIND_PROTO,
    "sport": contract.KIND_SPORT, "dport": contract.KIND_DPORT, "src_mac": contract.KIND_SRC_MAC,
    "dst_mac": contract.KIND_DST_MAC, "vlan": contract.KIND_VLAN, "ethertype": contract.KIND_ETHERTYPE,
    "tcp_flags": contract.KIND_TCP_FLAGS, "icmp_type": contract.KIND_ICMP,
    "established": contract.KIND_ESTABLISHED,
}
# What --established can answer (flow_kern.h): TCP, UDP, and ICMP echo replies
# and errors that quote a flow, by protocol and ICMP type.
ESTABLISHED_PROTOCOLS = (6, 17, 1, 58)
ESTABLISHED_ICMP_TYPES = {1: (0, 3, 11), 58: (129, 1, 2, 3)}  # echo reply; errors

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def cli_label(key: str) -> str:
    """How the command line names a match: --src-mac."""
    return "--" + key.replace("_", "-")


def file_label(key: str) -> str:
    """How xdpctl.toml names it: src_mac."""
    return key


# --- reading one value ---------------------------------------------------------


def _int(text, what: str, lo: int, hi: int) -> int:
    if isinstance(text, bool):
        raise BadInput(f"{what} must be a number from {lo} to {hi}, not {text!r}")
    if isinstance(text, int):
        value = text
    else:
        s = str(text).strip()
        if not _DECIMAL.match(s):
            raise BadInput(f"{what} must be a decimal number from {lo} to {hi}; got {text!r}")
        value = int(s)
    if not lo <= value <= hi:
        raise BadInput(f"{what} must be from {lo} to {hi}; got {value}")
    return value


def parse_prefix(text: str, what: str = "address") -> Network:
    """An IPv4 or IPv6 CIDR, or a bare address (a /32 or /128)."""
    s = str(text).strip()
    try:
        net = ipaddress.ip_network(s, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            loose = ipaddress.ip_network(s, strict=False)
            raise BadInput(f"{what} {s} has host bits set; did you mean {loose}?") from None
        raise BadInput(f"{what} {s!r} is not an IPv4 or IPv6 address or CIDR "
                       "(like 203.0.113.0/24 or 2001:db8::/32)") from None
    if net.version == 6 and net.network_address.scope_id is not None:
        # Python keeps the zone in the address, and in its equality: fe80::1%eth0
        # and fe80::1 would be two rules that match the very same frames.
        bare = ipaddress.IPv6Network((int(net.network_address), net.prefixlen))
        plain = bare.network_address if bare.prefixlen == 128 else bare
        raise BadInput(f"{what} {s} names a zone (%{net.network_address.scope_id}); frames carry no zone, and "
                       f"a rule already belongs to one interface: write {plain}")
    if net.version == 6 and net.network_address.ipv4_mapped is not None and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        raise BadInput(f"{what} {s} is an IPv4-mapped IPv6 address, which never appears on the wire; "
                       f"write {mapped}/{net.prefixlen - 96} for IPv4")
    return net


def parse_proto(text, what: str = "--proto") -> int:
    s = str(text).strip().lower()
    if s in PROTOCOLS:
        return PROTOCOLS[s]
    if _DECIMAL.match(s):
        return _int(s, what, 0, 255)
    raise BadInput(f"{what} {text!r} is not a protocol: use tcp, udp, icmp, icmpv6, "
                   f"{', '.join(n for n in PROTOCOLS if n not in ('tcp', 'udp', 'icmp', 'icmpv6'))} or 0-255")


def parse_ports(text, what: str) -> tuple[int, int]:
    """A port (80) or an inclusive range (22-25), ports 1 to 65535."""
    if isinstance(text, int) and not isinstance(text, bool):
        p = _int(text, what, 1, 65535)
        return p, p
    s = str(text).strip()
    lo_s, sep, hi_s = s.partition("-")
    lo = _int(lo_s, what, 1, 65535) if _DECIMAL.match(lo_s.strip()) else None
    if lo is None:
        raise BadInput(f"{what} must be a port (1-65535) or a range like 1024-2047; got {text!r}")
    if not sep:
        return lo, lo
    if not _DECIMAL.match(hi_s.strip()):
        raise BadInput(f"{what} must be a port (1-65535) or a range like 1024-2047; got {text!r}")
    hi = _int(hi_s, what, 1, 65535)
    if hi < lo:
        raise BadInput(f"{what} range {s} is reversed; write {hi}-{lo}")
    return lo, hi


def parse_mac(text, what: str) -> int:
    s = str(text).strip().lower()
    parts = re.split(r"[:-]", s)
    if len(parts) != 6 or not all(re.fullmatch(r"[0-9a-f]{2}", p) for p in parts):
        raise BadInput(f"{what} {text!r} is not a MAC address like 02:00:00:00:00:01")
    return int("".join(parts), 16)


def parse_vlan(text, what: str = "--vlan") -> int:
    return _int(text, what, 1, 4094)


def parse_ethertype(text, what: str = "--ethertype") -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        s = str(text).strip().lower()
        if s in ETHERTYPES:
            return ETHERTYPES[s]
        if re.fullmatch(r"0x[0-9a-f]{1,4}", s):
            value = int(s, 16)
        elif _DECIMAL.match(s):
            value = int(s)
        else:
            raise BadInput(f"{what} {text!r} is not an EtherType: use hex like 0x88cc, or "
                           f"{', '.join(ETHERTYPES)}")
    if not 0x0600 <= value <= 0xFFFF:
        raise BadInput(f"{what} {text} is below 0x0600, which is an 802.3 length, not a type")
    return value


def parse_tcp_flags(text, what: str = "--tcp-flags") -> tuple[int, int]:
    """'syn,!ack' -> (flags that must be set, flags that must be clear)."""
    set_mask = clear_mask = 0
    items = [t.strip().lower() for t in str(text).split(",")]
    if not any(items):
        raise BadInput(f"{what} needs flags, like syn,!ack")
    for item in items:
        neg = item.startswith("!")
        name = item[1:] if neg else item
        if name not in TCP_FLAGS:
            raise BadInput(f"{what}: {item!r} is not a TCP flag; use {', '.join(TCP_FLAGS)} "
                           "(with ! for must-be-clear)")
        bit = TCP_FLAGS[name]
        if (clear_mask if not neg else set_mask) & bit:
            raise BadInput(f"{what}: {name} cannot be both set and clear")
        if neg:
            clear_mask |= bit
        else:
            set_mask |= bit
    return set_mask, clear_mask


def parse_priority(text, what: str = "--priority") -> int:
    return _int(text, what, 0, PRIORITY_MAX)


def parse_established(value, what: str = "--established") -> bool:
    """A flag: true is the only value a match can have (a rule without it
    matches new and established flows alike)."""
    if value is True:
        return True
    if value is False:
        raise BadInput(f"{what} = false is not a match; leave {what} out for a rule that matches new and "
                       "established flows alike")
    raise BadInput(f"{what} is a flag: write {what} = true, not {value!r}")


def parse_action(text) -> int:
    s = str(text).strip().lower()
    if s not in ACTIONS:
        raise BadInput(f"action {text!r} is not one of: {', '.join(ACTIONS)}")
    return ACTIONS[s]


# --- the rule ------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    src: Network | None = None
    dst: Network | None = None
    proto: int | None = None
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    src_mac: int | None = None
    dst_mac: int | None = None
    vlan: int | None = None
    ethertype: int | None = None
    tcp_flags: tuple[int, int] | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    established: bool | None = None  # True: the frame answers a flow the host opened

    # Derived once (a rule set's table build asks for them per rule, often).
    kinds: int = field(init=False, repr=False, compare=False)
    plain: bool = field(init=False, repr=False, compare=False)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kinds = 0
        for key, kind in KIND_OF.items():
            if getattr(self, key) is not None:
                kinds |= kind
        object.__setattr__(self, "kinds", kinds)
        # Only a source or only a destination prefix: a block-list entry.
        object.__setattr__(self, "plain", kinds in (contract.KIND_SRC, contract.KIND_DST))
        # Plans and duplicate checks hash every rule's match, often; networks hash slowly.
        object.__setattr__(self, "_hash", hash(tuple(getattr(self, key) for key in KIND_OF)))

    def __hash__(self) -> int:
        return self._hash

    def matches(self, p) -> bool:
        """Does a frame, as xdpctl/datapath/classify.py parses it, meet every match?
        (The reference the program is tested against.)"""

        def prefix(net, addr) -> bool:
            if addr is None or p.ipv != net.version:
                return False
            return addr >> (net.max_prefixlen - net.prefixlen) == int(net.network_address) >> (
                net.max_prefixlen - net.prefixlen)

        def in_range(rng, value) -> bool:
            return value is not None and rng[0] <= value <= rng[1]

        checks = (
            self.src is None or prefix(self.src, p.src),
            self.dst is None or prefix(self.dst, p.dst),
            self.proto is None or (p.l4proto is not None and p.l4proto == self.proto),
            self.sport is None or in_range(self.sport, p.sport),
            self.dport is None or in_range(self.dport, p.dport),
            self.src_mac is None or p.src_mac == self.src_mac,
            self.dst_mac is None or p.dst_mac == self.dst_mac,
            self.vlan is None or p.vlan_id == self.vlan,
            self.ethertype is None or p.ethertype == self.ethertype,
            self.tcp_flags is None or (p.tcp_flags is not None and p.tcp_flags & self.tcp_flags[0] == self.tcp_flags[0]
                                       and not p.tcp_flags & self.tcp_flags[1]),
            self.icmp_type is None or p.icmp_type == self.icmp_type,
            self.icmp_code is None or p.icmp_code == self.icmp_code,
            # The flow table is the kernel's: the caller says what it holds for p.
            self.established is None or bool(getattr(p, "established", False)),
        )
        return all(checks)

    def describe(self) -> dict[str, str | int]:
        """The match as the CLI writes it (JSON, rule list, xdpctl.toml)."""
        out: dict[str, str | int] = {}
        if self.src is not None:
            out["src"] = str(self.src)
        if self.dst is not None:
            out["dst"] = str(self.dst)
        if self.proto is not None:
            out["proto"] = PROTOCOL_NAMES.get(self.proto, self.proto)
        for key in ("sport", "dport"):
            rng = getattr(self, key)
            if rng is not None:
                out[key] = rng[0] if rng[0] == rng[1] else f"{rng[0]}-{rng[1]}"
        for key in ("src_mac", "dst_mac"):
            mac = getattr(self, key)
            if mac is not None:
                out[key] = ":".join(f"{b:02x}" for b in mac.to_bytes(6, "big"))
        if self.vlan is not None:
            out["vlan"] = self.vlan
        if self.ethertype is not None:
            out["ethertype"] = f"0x{self.ethertype:04x}"
        if self.tcp_flags is not None:
            set_mask, clear_mask = self.tcp_flags
            names = [n for n, b in TCP_FLAGS.items() if set_mask & b]
            names += [f"!{n}" for n, b in TCP_FLAGS.items() if clear_mask & b]
            out["tcp_flags"] = ",".join(names)
        if self.icmp_type is not None:
            out["icmp_type"] = self.icmp_type
        if self.icmp_code is not None:
            out["icmp_code"] = self.icmp_code
        if self.established:
            out["established"] = True
        return out

    def check(self, label=cli_label) -> "Match":
        """Refuse matches that contradict each other (they could never match)."""
        L = label  # noqa: N806
        families = {n.version for n in (self.src, self.dst) if n is not None}
        if len(families) > 1:
            raise BadInput(f"{L('src')} and {L('dst')} are of different families (IPv4 and IPv6): "
                           "no frame has both")
        family = families.pop() if families else None
        if self.ethertype is not None:
            ip_types = {0x0800: 4, 0x86DD: 6}
            if family is not None and ip_types.get(self.ethertype) != family:
                raise BadInput(f"{L('ethertype')} 0x{self.ethertype:04x} contradicts an IPv{family} "
                               f"{L('src')}/{L('dst')}")
            transport = (self.proto, self.sport, self.dport, self.tcp_flags, self.icmp_type)
            if self.ethertype not in ip_types and any(v is not None for v in transport):
                raise BadInput(f"{L('ethertype')} 0x{self.ethertype:04x} is not IP, so it has no protocol, "
                               "ports, TCP flags or ICMP type to match")
            if self.ethertype in ip_types:
                family = family or ip_types[self.ethertype]
        if (self.sport or self.dport) and self.proto not in (None, 6, 17):
            raise BadInput(f"{L('sport')}/{L('dport')} need {L('proto')} tcp or udp (or no {L('proto')}: both)")
        if self.tcp_flags is not None and self.proto not in (None, 6):
            raise BadInput(f"{L('tcp_flags')} needs {L('proto')} tcp (or no {L('proto')})")
        if self.icmp_code is not None and self.icmp_type is None:
            raise BadInput(f"{L('icmp_code')} needs {L('icmp_type')}")
        if self.icmp_type is not None and self.proto not in (None, 1, 58):
            raise BadInput(f"{L('icmp_type')} needs {L('proto')} icmp or icmpv6 (or no {L('proto')}: both)")
        if self.proto == 1 and family == 6:
            raise BadInput(f"{L('proto')} icmp is IPv4's; with IPv6 addresses use {L('proto')} icmpv6")
        if self.proto == 58 and family == 4:
            raise BadInput(f"{L('proto')} icmpv6 is IPv6's; with IPv4 addresses use {L('proto')} icmp")
        if self.tcp_flags is not None and self.icmp_type is not None:
            raise BadInput(f"{L('tcp_flags')} and {L('icmp_type')} cannot both match one frame")
        if self.established:
            self._check_established(L)
        return self

    def _check_established(self, L) -> None:  # noqa: N803
        """Flows are TCP, UDP and ICMP echo: refuse what no flow's frame is."""
        if self.ethertype is not None and self.ethertype not in (0x0800, 0x86DD):
            raise BadInput(f"{L('ethertype')} 0x{self.ethertype:04x} is not IP, and {L('established')} holds "
                           "only for IPv4 and IPv6 frames (TCP, UDP, ICMP) of flows this host opened")
        if self.proto is not None and self.proto not in ESTABLISHED_PROTOCOLS:
            name = PROTOCOL_NAMES.get(self.proto, str(self.proto))
            raise BadInput(f"{L('established')} holds only for TCP, UDP, ICMP and ICMPv6 frames; "
                           f"{L('proto')} {name} is never part of a tracked flow")
        if self.icmp_type is not None:
            protos = [self.proto] if self.proto in ESTABLISHED_ICMP_TYPES else list(ESTABLISHED_ICMP_TYPES)
            if not any(self.icmp_type in ESTABLISHED_ICMP_TYPES[p] for p in protos):
                raise BadInput(f"{L('established')} holds for ICMP echo replies and errors only (ICMP types 0, "
                               f"3, 11; ICMPv6 1, 2, 3, 129), so never with {L('icmp_type')} {self.icmp_type}")


def parse_match(values: dict, label=cli_label) -> Match:
    """A Match from option values (None for options not given). label names
    the options in messages (cli_label or file_label)."""
    parsers = {
        "src": lambda v, w: parse_prefix(v, w), "dst": lambda v, w: parse_prefix(v, w),
        "proto": parse_proto, "sport": parse_ports, "dport": parse_ports,
        "src_mac": parse_mac, "dst_mac": parse_mac, "vlan": parse_vlan, "ethertype": parse_ethertype,
        "tcp_flags": parse_tcp_flags,
        "icmp_type": lambda v, w: _int(v, w, 0, 255), "icmp_code": lambda v, w: _int(v, w, 0, 255),
        "established": parse_established,
    }
    fields = {key: parsers[key](values[key], label(key)) for key in MATCH_KEYS if values.get(key) is not None}
    return Match(**fields).check(label)


@dataclass(frozen=True)
class Rule:
    action: int
    match: Match
    priority: int = contract.PRIORITY_DEFAULT
    priority_set: bool = False
    id: int = 0
    seq: int = 0
    slot: int = 0
    steer: Steer = NO_STEER  # where a redirect sends (rules/actions.py)

    @property
    def order(self) -> int:
        """Lower decides first: priority, then seq (insertion order)."""
        return (self.priority << 32) | self.seq

    @property
    def identity(self) -> tuple:
        """What makes two rules the same rule (for apply and duplicates)."""
        return (self.action, self.priority if self.priority_set else None, self.match, self.steer.key)

    def describe(self) -> dict:
        out = {
            "id": self.id,
            "priority": self.priority,
            "action": ACTION_NAMES[self.action],
            "match": self.match.describe(),
        }
        out.update(self.steer.describe())
        return out

    def with_ids(self, id: int, seq: int, slot: int) -> "Rule":
        return replace(self, id=id, seq=seq, slot=slot)

    # -- struct xdpctl_rule ------------------------------------------------

    def pack(self) -> bytes:
        m = self.match
        flags = contract.RULE_PRIORITY_SET if self.priority_set else 0
        if m.icmp_code is not None:
            flags |= contract.RULE_ICMP_CODE
        if m.src is not None and m.src.version == 6:
            flags |= contract.RULE_SRC_V6
        if m.dst is not None and m.dst.version == 6:
            flags |= contract.RULE_DST_V6
        addr = lambda n: n.network_address.packed if n is not None else b""  # noqa: E731
        mac = lambda v: v.to_bytes(6, "big") if v is not None else b""  # noqa: E731
        s = self.steer
        return contract.RULE.pack(
            self.id, self.seq, self.slot, m.kinds, self.priority, self.action, flags,
            m.src.prefixlen if m.src is not None else 0, m.dst.prefixlen if m.dst is not None else 0,
            m.proto or 0, *(m.tcp_flags or (0, 0)), m.icmp_type or 0, m.icmp_code or 0, 0,
            *(m.sport or (0, 0)), *(m.dport or (0, 0)), m.vlan or 0, m.ethertype or 0,
            addr(m.src), addr(m.dst), mac(m.src_mac), mac(m.dst_mac),
            s.cpu or 0, len(s.to), 0, s.queue_size or 0,
        )

    def pack_targets(self) -> bytes | None:
        """struct xdpctl_targets of a redirect --to rule (the targets map), else None."""
        if not self.steer.to:
            return None
        names = [t.name.encode(errors="surrogateescape") for t in self.steer.to]
        pad = contract.MAX_TARGETS - len(names)
        return contract.TARGETS.pack(*self.steer.ifindexes, *(0,) * pad, *names, *(b"",) * pad)

    @classmethod
    def unpack(cls, raw: bytes, targets: bytes | None = None) -> "Rule":
        """A rule from struct xdpctl_rule, and for a redirect --to rule its
        struct xdpctl_targets (from the targets map)."""
        (id_, seq, slot, kinds, priority, action, flags, src_len, dst_len, proto, tcp_set, tcp_clear,
         icmp_type, icmp_code, _pad, sport_lo, sport_hi, dport_lo, dport_hi, vlan, ethertype,
         src, dst, src_mac, dst_mac, cpu, ntargets, _pad1, queue) = contract.RULE.unpack(raw[: contract.RULE.size])
        has = lambda k: bool(kinds & k)  # noqa: E731

        def net(raw_addr: bytes, plen: int, v6: bool) -> Network:
            if v6:
                return ipaddress.IPv6Network((int.from_bytes(raw_addr, "big"), plen))
            return ipaddress.IPv4Network((int.from_bytes(raw_addr[:4], "big"), plen))

        m = Match(
            src=net(src, src_len, bool(flags & contract.RULE_SRC_V6)) if has(contract.KIND_SRC) else None,
            dst=net(dst, dst_len, bool(flags & contract.RULE_DST_V6)) if has(contract.KIND_DST) else None,
            proto=proto if has(contract.KIND_PROTO) else None,
            sport=(sport_lo, sport_hi) if has(contract.KIND_SPORT) else None,
            dport=(dport_lo, dport_hi) if has(contract.KIND_DPORT) else None,
            src_mac=int.from_bytes(src_mac[:6], "big") if has(contract.KIND_SRC_MAC) else None,
            dst_mac=int.from_bytes(dst_mac[:6], "big") if has(contract.KIND_DST_MAC) else None,
            vlan=vlan if has(contract.KIND_VLAN) else None,
            ethertype=ethertype if has(contract.KIND_ETHERTYPE) else None,
            tcp_flags=(tcp_set, tcp_clear) if has(contract.KIND_TCP_FLAGS) else None,
            icmp_type=icmp_type if has(contract.KIND_ICMP) else None,
            icmp_code=icmp_code if flags & contract.RULE_ICMP_CODE else None,
            established=True if has(contract.KIND_ESTABLISHED) else None,
        )
        steer = NO_STEER
        if action == contract.ACTION_REDIRECT_CPU:
            steer = Steer(cpu=cpu, queue=queue)
        elif action == contract.ACTION_REDIRECT:
            steer = Steer(to=unpack_targets(targets or bytes(contract.TARGETS.size), ntargets))
        return cls(action=action, match=m, priority=priority,
                   priority_set=bool(flags & contract.RULE_PRIORITY_SET), id=id_, seq=seq, slot=slot,
                   steer=steer)


def unpack_targets(raw: bytes, count: int | None = None) -> tuple[Target, ...]:
    """The targets in a struct xdpctl_targets: the first count, or (count
    None) every one with a name."""
    values = contract.TARGETS.unpack(raw[: contract.TARGETS.size])
    names = values[contract.MAX_TARGETS:]
    if count is None:
        count = sum(1 for n in names if n.strip(b"\0"))
    count = min(count, contract.MAX_TARGETS)
    return tuple(Target(name.split(b"\0", 1)[0].decode(errors="surrogateescape") or f"if{index}", index)
                 for index, name in zip(values[:count], names[:count]))


def general_limit(rules) -> tuple[int, str]:
    """The most general rules (those not plain) one interface's program can
    hold with these rules (each has .action and .match), and why, when less
    than contract.MAX_GENERAL."""
    if (any(r.match.established for r in rules)
            and any(r.action == contract.ACTION_REDIRECT for r in rules)):
        return MAX_GENERAL_ESTABLISHED_REDIRECT, " when --established and redirect --to rules are on it together"
    return contract.MAX_GENERAL, ""


def sort_rules(rules) -> list[Rule]:
    return sorted(rules, key=lambda r: r.order)


def decide(rules, parsed) -> Rule | None:
    """The rule that decides a frame: the first match in order, or None."""
    for rule in sort_rules(rules):
        if rule.match.matches(parsed):
            return rule
    return None


@dataclass
class RuleSet:
    """The rules of one interface in one generation, with the counters that
    give the next id and seq."""

    rules: list[Rule] = field(default_factory=list)
    next_id: int = 1
    next_seq: int = 1
