"""What `apply` would change on one interface: pure, so it is tested
without a kernel. Rules the file shares with the interface keep their id,
slot (and so their hits); new ones get fresh ids; the file's order becomes
the insertion order."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..datapath import contract
from .config_file import InterfaceConfig
from ..datapath.program import FilterOptions
from .model import Rule, sort_rules


def _text(rule) -> str:
    d = rule.describe()
    words = [d["action"]] + ([rule.steer.words()] if rule.steer.words() else [])
    words += [k if v is True else f"{k} {v}" for k, v in d["match"].items()]
    if rule.priority_set:
        words.append(f"priority {rule.priority}")
    return " ".join(words)


@dataclass
class InterfacePlan:
    name: str
    kind: str  # "attach", "change" or "none"
    mode: str
    options: FilterOptions
    rules: list[Rule]
    next_id: int
    next_seq: int
    lines: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return self.kind != "none"


def plan_interface(want: InterfaceConfig, current) -> InterfacePlan:
    """current: deploy.Current for an interface xdpctl manages, else None."""
    options = FilterOptions(drop_non_ip=want.drop_non_ip, policy_deny=want.policy == "deny")
    have = sort_rules(current.rules) if current else []
    next_id = current.next_id if current else 1
    by_identity = {r.identity: r for r in have}
    used_slots = {r.slot for r in have}
    free = (s for s in range(10**9) if s not in used_slots)
    rules: list[Rule] = []
    added: list[Rule] = []
    for seq, spec in enumerate(want.rules, start=1):
        old = by_identity.get(spec.identity)
        if old is not None:
            rules.append(old.with_ids(old.id, seq, old.slot))
        else:
            rule = Rule(spec.action, spec.match,
                        spec.priority if spec.priority is not None else contract.PRIORITY_DEFAULT,
                        spec.priority is not None, next_id, seq, next(free), spec.steer, spec.limit)
            next_id += 1
            rules.append(rule)
            added.append(rule)
    next_seq = len(want.rules) + 1
    p = InterfacePlan(want.name, "none", want.mode, options, rules, next_id, next_seq)
    if current is None:
        p.kind = "attach"
        opts = ", ".join([want.mode, f"policy {want.policy}"] + (["drop-non-ip"] if want.drop_non_ip else []))
        p.lines.append(f"{want.name}: attach ({opts}) with {len(rules)} rules")
        p.lines += [f"{want.name}: + {_text(r)}" for r in rules[:50]]
        if len(rules) > 50:
            p.lines.append(f"{want.name}: + ... {len(rules) - 50} more")
        return p
    if current.options != options:
        p.lines.append(f"{want.name}: options {_opts(current.options)} -> {_opts(options)} "
                       "(a new program, swapped in atomically)")
    kept = {r.identity for r in rules}
    removed = [r for r in have if r.identity not in kept]
    for r in removed[:50]:
        p.lines.append(f"{want.name}: - rule {r.id}: {_text(r)}")
    for r in added[:50]:
        p.lines.append(f"{want.name}: + {_text(r)}")
    if len(removed) > 50 or len(added) > 50:
        p.lines.append(f"{want.name}: ... {len(removed)} removed, {len(added)} added in all")
    # Only the decision order matters (priority, then file order): seq values
    # that differ without changing it are no change.
    if not removed and not added and [r.identity for r in have] != [r.identity for r in sort_rules(rules)]:
        p.lines.append(f"{want.name}: reorder the rules as the file has them")
    if p.lines:
        p.kind = "change"
    return p


def _opts(options: FilterOptions) -> str:
    return ", ".join([f"policy {options.policy}"] + (["drop-non-ip"] if options.drop_non_ip else []))
