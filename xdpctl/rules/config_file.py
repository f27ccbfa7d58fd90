"""xdpctl.toml: reading it (every error with its line), and writing it.

    [interfaces.eth0]
    mode = "native"            # native | generic | offload
    policy = "allow"           # allow | deny
    drop_non_ip = false
    rules = [
      { action = "drop", src = "203.0.113.0/24", proto = "udp", dport = 53 },
      { action = "pass", src_mac = "02:00:00:00:00:01", priority = 10 },
      { action = "redirect", to = ["eth1", "eth2"], proto = "udp" },
      { action = "redirect", cpu = 1, proto = "tcp", dport = 443 },
      { action = "pass", established = true },
    ]

Rules may also be written as [[interfaces.eth0.rules]] tables. Rules
without a priority keep the order of the file. A file is checked whole
before anything changes: the first problem is reported as FILE:LINE.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field

from ..datapath import contract
from .. import safe_files, validate
from ..errors import BadInput
from . import actions, file_shape
from .actions import NO_STEER, STEER_KEYS, Steer
from .model import MATCH_KEYS, Match, Rule, file_label, general_limit, parse_match, parse_priority

INTERFACE_KEYS = {"mode", "policy", "drop_non_ip", "rules"}
# A file of the most rules xdpctl holds, in the longest form, is ~30 MB; a
# larger one is refused before it is read, rather than read into memory whole.
MAX_FILE_BYTES = 64 << 20
RULE_KEYS = {"action", "priority", *MATCH_KEYS, *STEER_KEYS}
MODES = tuple(contract.MODES)


@dataclass(frozen=True)
class RuleSpec:
    action: int
    match: Match
    priority: int | None
    line: int
    steer: Steer = NO_STEER  # redirect targets by name (resolved by lifecycle/apply.py)

    @property
    def identity(self) -> tuple:
        return (self.action, self.priority, self.match, self.steer.key)


@dataclass
class InterfaceConfig:
    name: str
    line: int
    mode: str = "native"
    policy: str = "allow"
    drop_non_ip: bool = False
    rules: list[RuleSpec] = field(default_factory=list)


@dataclass
class ConfigFile:
    path: str
    interfaces: dict[str, InterfaceConfig]


class _Locator:
    """Line numbers for parts of the parsed document, from the raw text."""

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def _find(self, pattern: str, start: int = 0, stop: int | None = None) -> int | None:
        rx = re.compile(pattern)
        for i in range(start, len(self.lines) if stop is None else stop):
            if rx.search(self.lines[i]):
                return i
        return None

    @staticmethod
    def _name(name: str) -> str:
        try:
            written = re.escape(_key(name))  # as dump() writes it: escaped
        except BadInput:
            written = re.escape(name)
        return rf'(?:{re.escape(name)}|"{re.escape(name)}"|\'{re.escape(name)}\'|{written})'

    def section(self, name: str) -> tuple[int, int]:
        """(first, end) line indexes of [interfaces.NAME] and what follows."""
        head = self._find(rf"^\s*\[\s*interfaces\s*\.\s*{self._name(name)}\s*\]")
        if head is None:  # a dotted key elsewhere: interfaces.eth0.mode = ...
            head = self._find(rf"^\s*interfaces\s*\.\s*{self._name(name)}\s*\.") or 0
            return head, head + 1
        end = self._find(r"^\s*\[(?!\s*\[\s*interfaces\s*\.\s*" + self._name(name) + r"\s*\.\s*rules)", head + 1)
        return head, len(self.lines) if end is None else end

    def key(self, name: str, key: str) -> int:
        first, end = self.section(name)
        i = self._find(rf"^\s*{re.escape(key)}\s*=", first, end)
        return (first if i is None else i) + 1

    def rules(self, name: str, count: int) -> list[int]:
        """The line of each rule of an interface, in order."""
        first, end = self.section(name)
        table = re.compile(rf"^\s*\[\[\s*interfaces\s*\.\s*{self._name(name)}\s*\.\s*rules\s*\]\]")
        tables = [i for i in range(first, len(self.lines)) if table.match(self.lines[i])]
        if tables:
            return [i + 1 for i in tables][:count]
        start = self._find(r"^\s*rules\s*=", first, end)
        if start is None:
            return [first + 1] * count
        out: list[int] = []
        depth, quote = 0, None
        for i in range(start, len(self.lines)):
            line = self.lines[i]
            j = line.index("=") + 1 if i == start else 0
            while j < len(line):
                ch = line[j]
                if quote:
                    if ch == "\\" and quote == '"':
                        j += 1
                    elif ch == quote:
                        quote = None
                elif ch in "\"'":
                    quote = ch
                elif ch == "#":
                    break
                elif ch == "{":
                    if depth == 0:
                        out.append(i + 1)
                    depth += 1
                elif ch == "}":
                    depth -= 1
                j += 1
            if len(out) >= count:
                break
        return out + [start + 1] * (count - len(out))


def _trusted(path: str):
    """The rule file's own test, of the descriptor it is read from."""

    def check(st: os.stat_result) -> None:
        if st.st_uid not in (0, os.geteuid()):
            raise BadInput(f"{path} is owned by uid {st.st_uid}, not by root: it decides what reaches this "
                           "machine, so xdpctl reads it only from root (chown root)")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise BadInput(f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}): it decides "
                           "what reaches this machine, so xdpctl refuses it (chmod go-w)")

    return check


def load(path: str) -> ConfigFile:
    """Read and check a whole file; BadInput('FILE:LINE: ...') on the first problem."""
    raw = safe_files.read(path, MAX_FILE_BYTES, what="a configuration file (the most rules it holds fit "
                          "in far less)", check=_trusted(path)).data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BadInput(f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8") from None
    return parse(text, path)


def parse(text: str, path: str = "xdpctl.toml") -> ConfigFile:
    file_shape.check(text, path)  # nesting and rule counts, before tomllib pays for them
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f":{m.group(1)}" if m else ""
        why = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise BadInput(f"{path}{where}: not valid TOML: {why}") from None
    loc = _Locator(text)

    def fail(line: int, message: str):
        raise BadInput(f"{path}:{line}: {message}")

    unknown = set(doc) - {"interfaces"}
    if unknown:
        key = sorted(unknown)[0]
        fail((loc._find(rf"^\s*\[?\s*{re.escape(key)}\b") or 0) + 1,
             f"unknown key {key!r}; the file holds [interfaces.NAME] tables")
    interfaces = doc.get("interfaces", {})
    if not isinstance(interfaces, dict):
        fail(1, "interfaces must be tables: [interfaces.eth0]")
    out: dict[str, InterfaceConfig] = {}
    for name, body in interfaces.items():
        first, _ = loc.section(name)
        try:
            validate.ifname(name)
        except BadInput as exc:
            fail(first + 1, str(exc))
        if not isinstance(body, dict):
            fail(first + 1, f"interfaces.{name} must be a table")
        iface = InterfaceConfig(name, first + 1)
        for key in body:
            if key not in INTERFACE_KEYS:
                fail(loc.key(name, key), f"unknown key {key!r} for an interface; known: "
                                         f"{', '.join(sorted(INTERFACE_KEYS))}")
        if "mode" in body:
            if body["mode"] not in MODES:
                fail(loc.key(name, "mode"), f"mode {body['mode']!r} is not one of: {', '.join(MODES)}")
            iface.mode = body["mode"]
        if "policy" in body:
            if body["policy"] not in ("allow", "deny"):
                fail(loc.key(name, "policy"), f"policy {body['policy']!r} is not allow or deny")
            iface.policy = body["policy"]
        if "drop_non_ip" in body:
            if not isinstance(body["drop_non_ip"], bool):
                fail(loc.key(name, "drop_non_ip"), "drop_non_ip must be true or false")
            iface.drop_non_ip = body["drop_non_ip"]
        rules = body.get("rules", [])
        if not isinstance(rules, list):
            fail(loc.key(name, "rules"), "rules must be a list of tables: rules = [ { action = \"drop\", ... } ]")
        if len(rules) > contract.MAX_RULES:  # before each rule is read: that is the cost
            fail(loc.rules(name, contract.MAX_RULES + 1)[-1], f"more than {contract.MAX_RULES:,} rules for "
                 f"{name}, the most xdpctl holds per interface")
        lines = loc.rules(name, len(rules))
        seen: dict[tuple, int] = {}
        for item, line in zip(rules, lines):
            spec = _rule(item, line, fail)
            if spec.identity in seen:
                fail(line, f"duplicate rule: the same as line {seen[spec.identity]}")
            seen[spec.identity] = line
            iface.rules.append(spec)
        _check_steering(iface, fail)
        general = [spec.line for spec in iface.rules if not spec.match.plain]
        most, why = general_limit(iface.rules)
        if len(general) > most:
            fail(general[most],
                 f"more than {most:,} rules for {name} that match more than one prefix, "
                 f"the most xdpctl holds per interface{why} (plain src or dst rules do not count)")
        out[name] = iface
    return ConfigFile(path, out)


def _check_steering(iface: InterfaceConfig, fail) -> None:
    """What holds between an interface's redirect rules: one queue per CPU,
    and their targets within the devmap's share of one generation."""
    queues: dict[int, RuleSpec] = {}
    groups: set = set()
    entries = 0
    for spec in iface.rules:
        cpu = spec.steer.cpu
        if cpu is not None:
            first = queues.setdefault(cpu, spec)
            if first.steer.queue_size != spec.steer.queue_size:
                fail(spec.line, f"CPU {cpu} already takes frames with queue {first.steer.queue_size} (line "
                     f"{first.line}); a CPU has one queue: give the same queue (or none, for "
                     f"{contract.QUEUE_DEFAULT})")
        if spec.steer.to and spec.steer.to not in groups:
            groups.add(spec.steer.to)
            entries += len(spec.steer.to)
            if entries > contract.DEVMAP_GEN:
                fail(spec.line, f"more than {contract.DEVMAP_GEN:,} redirect targets for {iface.name} (distinct "
                     "target lists, each counted whole), the most xdpctl holds per interface")


def _rule(item, line: int, fail) -> RuleSpec:
    if not isinstance(item, dict):
        fail(line, "a rule must be a table: { action = \"drop\", src = \"203.0.113.0/24\" }")
    unknown = set(item) - RULE_KEYS
    if unknown:
        fail(line, f"unknown rule key {sorted(unknown)[0]!r}; known: {', '.join(sorted(RULE_KEYS))}")
    if "action" not in item:
        fail(line, f"a rule needs an action: {', '.join(actions.ACTIONS)}")
    try:
        if not isinstance(item["action"], str) or item["action"] not in actions.ACTIONS:
            raise BadInput(f"action {item['action']!r} is not one of: {', '.join(actions.ACTIONS)}")
        action, steer = actions.parse(item["action"], item.get("to"), item.get("cpu"), item.get("queue"),
                                      file_label)
        priority = parse_priority(item["priority"], "priority") if "priority" in item else None
        values = {k: v for k, v in item.items() if k in MATCH_KEYS}
        for k, v in values.items():
            if k == "established":  # a flag: parse_established reads it
                continue
            if not isinstance(v, (str, int)) or isinstance(v, bool):
                raise BadInput(f"{k} must be a string or a number, not {v!r}")
        match = parse_match(values, file_label)
    except BadInput as exc:
        fail(line, str(exc))
    return RuleSpec(action, match, priority, line, steer)


# --- writing -------------------------------------------------------------------


# A TOML basic string holds no control character: each is escaped, so that
# what is written reads back exactly (an interface name may hold any byte
# but '/', ':', NUL and space) and no escape sequence reaches a terminal.
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_MUST_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f]')


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if not validate.utf8(text):
        raise BadInput(f"{validate.shown(text)} is not UTF-8, so no xdpctl.toml can name it; "
                       "rename the interface (`ip link set dev OLD name NEW`)")
    return '"' + _MUST_ESCAPE.sub(lambda m: _ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), text) + '"'


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _toml_value(name)


def dump(interfaces: list[tuple[str, str, str, bool, list[Rule]]]) -> str:
    """(name, mode, policy, drop_non_ip, rules in decision order) -> xdpctl.toml."""
    out = ["# xdpctl configuration: `xdpctl apply FILE` makes the machine match it.", ""]
    for name, mode, policy, drop_non_ip, rules in interfaces:
        out.append(f"[interfaces.{_key(name)}]")
        out.append(f"mode = {_toml_value(mode)}")
        out.append(f"policy = {_toml_value(policy)}")
        out.append(f"drop_non_ip = {_toml_value(drop_non_ip)}")
        if rules:
            out.append("rules = [")
            for r in rules:
                d = r.describe()
                parts = [f"action = {_toml_value(d['action'])}"]
                if r.steer.to:
                    parts.append("to = [" + ", ".join(_toml_value(t.name) for t in r.steer.to) + "]")
                elif r.steer.cpu is not None:
                    parts.append(f"cpu = {r.steer.cpu}")
                    if r.steer.queue_size != contract.QUEUE_DEFAULT:
                        parts.append(f"queue = {r.steer.queue_size}")
                parts += [f"{k} = {_toml_value(v)}" for k, v in d["match"].items()]
                if r.priority_set:
                    parts.append(f"priority = {r.priority}")
                out.append("  { " + ", ".join(parts) + " },")
            out.append("]")
        else:
            out.append("rules = []")
        out.append("")
    return "\n".join(out)
