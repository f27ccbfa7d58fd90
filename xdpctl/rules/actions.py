"""The actions a rule takes, beyond pass and drop: redirect out of other
interfaces (--to, spread by a flow hash over several), redirect on to
another CPU (--cpu, with a --queue), and tx (back out, MACs swapped).

Pure: what the options say and whether they hold together, and where a rule
set's redirect targets sit in the devmap. Whether the interfaces and CPUs
named exist, are up and can take XDP frames is asked of the machine in
xdpctl/lifecycle/steering.py, which also writes the devmap and cpumap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..datapath import contract
from ..errors import BadInput
from .. import validate

# The actions as the command line and xdpctl.toml name them. redirect is
# one name for two codes: --to (the devmap) or --cpu (the cpumap).
ACTIONS = {"pass": contract.ACTION_PASS, "drop": contract.ACTION_DROP, "redirect": contract.ACTION_REDIRECT,
           "tx": contract.ACTION_TX}
ACTION_NAMES = {contract.ACTION_PASS: "pass", contract.ACTION_DROP: "drop", contract.ACTION_REDIRECT: "redirect",
                contract.ACTION_TX: "tx", contract.ACTION_REDIRECT_CPU: "redirect"}
REDIRECTS = (contract.ACTION_REDIRECT, contract.ACTION_REDIRECT_CPU)

# The -D switch (XDPCTL_ACTS_*) each action needs compiled in.
ACTS_OF = {contract.ACTION_REDIRECT: contract.ACTS_REDIRECT, contract.ACTION_REDIRECT_CPU: contract.ACTS_CPU,
           contract.ACTION_TX: contract.ACTS_TX}
STEER_KEYS = ("to", "cpu", "queue")
CPU_MAX = 65535  # the decision holds a CPU in 16 bits
_DECIMAL = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class Target:
    """An interface a redirect --to rule sends to: its name, and its ifindex
    once xdpctl resolved the name on the machine (0 before: a file just read)."""

    name: str
    ifindex: int = 0


@dataclass(frozen=True)
class Steer:
    """Where a redirect sends a frame: interfaces in order (to), or a CPU
    and the size of its queue. Empty for pass, drop and tx."""

    to: tuple[Target, ...] = ()
    cpu: int | None = None
    queue: int | None = None  # the cpumap queue (the default when not given)

    @property
    def key(self) -> tuple:
        """What makes two steers the same (names and their ifindexes)."""
        return (tuple((t.name, t.ifindex) for t in self.to), self.cpu, self.queue_size)

    @property
    def queue_size(self) -> int | None:
        if self.cpu is None:
            return None
        return self.queue if self.queue is not None else contract.QUEUE_DEFAULT

    @property
    def ifindexes(self) -> tuple[int, ...]:
        return tuple(t.ifindex for t in self.to)

    def describe(self) -> dict:
        """As the CLI writes it (JSON, rule list, xdpctl.toml): to, or cpu
        and queue."""
        if self.to:
            return {"to": [t.name for t in self.to]}
        if self.cpu is not None:
            return {"cpu": self.cpu, "queue": self.queue_size}
        return {}

    def words(self) -> str:
        """'to eth1,eth2' or 'cpu 1 queue 2048', for one-line messages."""
        if self.to:
            return "to " + ",".join(t.name for t in self.to)
        if self.cpu is not None:
            return f"cpu {self.cpu} queue {self.queue_size}"
        return ""


NO_STEER = Steer()


def _number(value, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadInput(f"{what} must be a number from {lo} to {hi}, not {value!r}")
    if isinstance(value, str):
        if not _DECIMAL.match(value.strip()):
            raise BadInput(f"{what} must be a decimal number from {lo} to {hi}; got {value!r}")
        value = int(value.strip())
    if not lo <= value <= hi:
        raise BadInput(f"{what} must be from {lo} to {hi}; got {value}")
    return value


def parse_targets(value, what: str = "--to") -> tuple[Target, ...]:
    """'eth1,eth2' (the command line) or ["eth1", "eth2"] (xdpctl.toml):
    1 to 64 interface names, each once."""
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",")]
    elif isinstance(value, list) and all(isinstance(n, str) for n in value):
        names = [n.strip() for n in value]
    else:
        raise BadInput(f"{what} takes interface names, like eth1 or eth1,eth2 (a list of strings in a file)")
    if not names or not all(names):
        raise BadInput(f"{what} needs interface names, like eth1 or eth1,eth2,eth3")
    if len(names) > contract.MAX_TARGETS:
        raise BadInput(f"{what} names {len(names)} interfaces; a rule spreads over at most {contract.MAX_TARGETS}")
    seen = set()
    for name in names:
        validate.ifname(name)
        if name in seen:
            raise BadInput(f"{what} names {name} twice; name each interface once (the flow hash "
                           "spreads flows evenly over them)")
        seen.add(name)
    return tuple(Target(n) for n in names)


def parse(action: str, to=None, cpu=None, queue=None, label=lambda k: "--" + k) -> tuple[int, Steer]:
    """The action code and its steering from the options given (None: not
    given). label names an option in messages (--to, or to in a file)."""
    name = str(action).strip().lower()
    if name not in ACTIONS:
        raise BadInput(f"action {action!r} is not one of: {', '.join(ACTIONS)}")
    given = [key for key, v in (("to", to), ("cpu", cpu), ("queue", queue)) if v is not None]
    if name != "redirect":
        if given:
            why = ("tx sends a frame back out of the interface it came in on" if name == "tx"
                   else f"{name} keeps the frame on this interface's path")
            raise BadInput(f"{label(given[0])} is for redirect; {why}, so it takes no {label(given[0])}")
        return ACTIONS[name], NO_STEER
    if to is not None and cpu is not None:
        raise BadInput(f"{label('to')} and {label('cpu')} cannot be given together: a frame leaves by "
                       "an interface or goes on to a CPU's stack, not both")
    if to is None and cpu is None:
        raise BadInput(f"redirect needs {label('to')} IF[,IF...] (out of interfaces) or {label('cpu')} N "
                       "(on to the stack on CPU N)")
    if to is not None:
        if queue is not None:
            raise BadInput(f"{label('queue')} sizes a CPU's queue: it goes with {label('cpu')}, not {label('to')}")
        return contract.ACTION_REDIRECT, Steer(to=parse_targets(to, label("to")))
    n = _number(cpu, label("cpu"), 0, CPU_MAX)
    size = _number(queue, label("queue"), 1, contract.QUEUE_MAX) if queue is not None else None
    return contract.ACTION_REDIRECT_CPU, Steer(cpu=n, queue=size)


def acts(rules) -> int:
    """The XDPCTL_ACTS_* bits a rule set needs compiled in."""
    out = 0
    for r in rules:
        out |= ACTS_OF.get(r.action, 0)
    return out


# --- the devmap ----------------------------------------------------------------


Group = tuple[Target, ...]


def devmap_offsets(rules) -> dict[Group, int]:
    """Where each distinct target list of a rule set's redirect --to rules
    starts in its generation's part of the devmap: consecutive, in decision
    order (rules with the same targets in the same order share them)."""
    out: dict[Group, int] = {}
    offset = 0
    for r in sorted(rules, key=lambda r: r.order):
        if r.action != contract.ACTION_REDIRECT:
            continue
        if r.steer.to not in out:
            out[r.steer.to] = offset
            offset += len(r.steer.to)
    return out


def devmap_entries(rules) -> int:
    """Devmap entries a rule set takes in its generation."""
    return sum(len(group) for group in devmap_offsets(rules))


def decision_steer(rule, offsets: dict[Group, int]) -> tuple[int, int]:
    """(targets, target) of a rule's struct xdpctl_decision."""
    if rule.action == contract.ACTION_REDIRECT:
        return len(rule.steer.to), offsets[rule.steer.to]
    if rule.action == contract.ACTION_REDIRECT_CPU:
        return 0, rule.steer.cpu
    return 0, 0


def check_queues(rules, label=lambda k: "--" + k) -> None:
    """One queue per CPU: every rule that redirects to a CPU gives it the
    same queue size (the cpumap has one entry per CPU)."""
    seen: dict[int, object] = {}
    for r in sorted(rules, key=lambda r: r.order):
        if r.action != contract.ACTION_REDIRECT_CPU:
            continue
        first = seen.setdefault(r.steer.cpu, r)
        if first.steer.queue_size != r.steer.queue_size:
            who = f"rule {first.id}" if getattr(first, "id", 0) else "another rule"
            raise BadInput(f"CPU {r.steer.cpu} already takes frames from {who} with {label('queue')} "
                           f"{first.steer.queue_size}; a CPU has one queue: give the same {label('queue')} "
                           f"(or none, for {contract.QUEUE_DEFAULT})")


def check_devmap(rules, where: str) -> None:
    """A rule set's redirect targets must fit its generation's devmap part."""
    n = devmap_entries(rules)
    if n > contract.DEVMAP_GEN:
        raise BadInput(f"{where} would have {n:,} redirect targets (distinct target lists, each counted "
                       f"whole); xdpctl holds at most {contract.DEVMAP_GEN:,} per interface. Nothing was changed")
