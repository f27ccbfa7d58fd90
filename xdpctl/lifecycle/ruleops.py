"""rule add, rule del, rule list: changing and reading one interface's rules.

Each change reads the recorded rules of the active generation, computes the
new set, and hands it to xdpctl/lifecycle/deploy.py: maps only when the program's
layout holds it, a recompile and atomic swap when not. Changes on one
machine are serialised by the state lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..datapath import contract, counters
from ..rules import engine, limit_tables
from ..kernel import privileges
from .deploy import Current, deploy
from ..errors import BadInput, NotManaged, XdpctlError
from ..datapath.layout import Layout
from ..rules import actions
from ..rules.actions import NO_STEER, Steer
from ..rules.limits import Limit
from ..rules.model import Match, Rule, general_limit, sort_rules
from . import steering
from .target import Target, resolve


class RuleLimit(XdpctlError):
    """A change would pass a limit; nothing was changed."""


@dataclass
class Change:
    rule: Rule | None
    compiled: bool
    prog_id: int
    notes: list[str]


def _managed(app, ifname: str) -> Target:
    target = resolve(app, ifname)
    if not target.ours:
        raise NotManaged(ifname)
    return target


def check_limits(ifname: str, rules: list[Rule]) -> None:
    if len(rules) > contract.MAX_RULES:
        raise RuleLimit(f"{ifname} would have {len(rules):,} rules; xdpctl holds at most "
                        f"{contract.MAX_RULES:,} per interface. Nothing was changed")
    general = sum(1 for r in rules if not r.match.plain or r.limit is not None)  # limited: never plain
    most, why = general_limit(rules)
    if general > most:
        raise RuleLimit(
            f"{ifname} would have {general:,} rules that match more than one prefix; xdpctl holds at most "
            f"{most:,} such rules per interface{why} (plain --src/--dst rules do not count). "
            "Nothing was changed")
    actions.check_devmap(rules, ifname)
    actions.check_queues(rules)
    limited = sum(1 for r in rules if r.limit is not None)
    if limited > contract.LIMIT_K:
        raise RuleLimit(f"{ifname} would have {limited} rules with --over; xdpctl holds at most "
                        f"{contract.LIMIT_K} per interface (a frame consults each limited rule it matches). "
                        "Nothing was changed")


def free_slots(rules: list[Rule], n: int) -> list[int]:
    used = {r.slot for r in rules}
    out, slot = [], 0
    while len(out) < n:
        if slot not in used:
            out.append(slot)
        slot += 1
    return out


def add(app, ifname: str, action: int, match: Match, priority: int | None, steer: Steer = NO_STEER,
        limit: Limit | None = None) -> Change:
    """Add a rule; steer: a redirect's targets by name, or its CPU
    (rules/actions.py), checked on the machine here (steering.resolve);
    limit: its --over (rules/limits.py)."""
    privileges.require_attach(f"changing the rules of {ifname}")
    with app.state.lock():
        target = _managed(app, ifname)
        steer = steering.resolve(app, target.ifname, action, steer, mode=target.meta.mode_name)
        current = Current.read(target)
        for r in current.rules:
            if r.identity == (action, priority, match, steer.key, limit):
                raise BadInput(f"{ifname} already has this rule (id {r.id}); nothing was changed")
        (slot,) = free_slots(current.rules, 1)
        rule = Rule(action, match, priority if priority is not None else contract.PRIORITY_DEFAULT,
                    priority is not None, current.next_id, current.next_seq, slot, steer, limit)
        rules = current.rules + [rule]
        check_limits(ifname, rules)
        outcome = deploy(app, target, mode=current.mode, options=current.options, rules=rules,
                         next_id=current.next_id + 1, next_seq=current.next_seq + 1, current=current)
    return Change(rule, outcome.compiled, outcome.prog_id, outcome.notes)


def delete(app, ifname: str, rule_id: int) -> Change:
    privileges.require_attach(f"changing the rules of {ifname}")
    with app.state.lock():
        target = _managed(app, ifname)
        current = Current.read(target)
        gone = [r for r in current.rules if r.id == rule_id]
        if not gone:
            ids = ", ".join(str(r.id) for r in sort_rules(current.rules)[:10]) or "none"
            raise BadInput(f"{ifname} has no rule {rule_id}; its rules are: {ids}"
                           + (" ..." if len(current.rules) > 10 else ""))
        rules = [r for r in current.rules if r.id != rule_id]
        outcome = deploy(app, target, mode=current.mode, options=current.options, rules=rules,
                         next_id=current.next_id, next_seq=current.next_seq, current=current)
    return Change(gone[0], outcome.compiled, outcome.prog_id, outcome.notes)


def raw_hits(target: Target, rules: list[Rule]) -> dict[int, tuple[int, int]]:
    """The rules' hits as the program counted them, since each rule came."""
    layout = Layout.unpack(target.meta.layout)
    if not layout.engine or not rules:
        return {}
    return engine.read_hits(target.att.pin(layout.pin_hits()), layout.slots)


def hits_of(target: Target, rules: list[Rule]) -> dict[int, tuple[int, int]]:
    """The rules' hits since the last `stats --reset` (datapath/counters.py)."""
    base = counters.read_baseline(str(target.att.path))
    return counters.hits_since(raw_hits(target, rules), base)


def describe(rules: list[Rule], hits: dict[int, tuple[int, int]], limited: dict[int, dict] | None = None
             ) -> list[dict]:
    """The rules in decision order with their hits; limited rules with what
    their limit saw (limit_counts), under "limit"."""
    out = []
    for r in sort_rules(rules):
        d = r.describe()
        packets, nbytes = hits.get(r.slot, (0, 0))
        d["hits"] = {"packets": packets, "bytes": nbytes}
        if limited and r.slot in limited and r.limit is not None:
            d["limit"] = limited[r.slot]
        out.append(d)
    return out


def limit_counts(target: Target, rules: list[Rule]) -> dict[int, dict]:
    """slot -> what a limited rule's limit saw: frames within the rate (they
    went on to the next rule), keys in the table now, keys evicted (added
    less present), and frames of keys not in the table the ceiling stopped."""
    layout = Layout.unpack(target.meta.layout)
    slots = [r.slot for r in rules if r.limit is not None]
    if not slots or not layout.actions & contract.FEAT_LIMITS:
        return {}
    stats = engine.read_limit_stats(target.att.pin(layout.pin_limit_stats()), slots)
    keys = limit_tables.count_keys(target.att.pin(layout.pin_buckets()), slots)
    out = {}
    for slot in slots:
        within, within_bytes, new_keys, ceiling_over = stats[slot]
        present = keys.get(slot, 0)
        out[slot] = {"within": {"packets": within, "bytes": within_bytes}, "keys": present,
                     "evictions": max(0, new_keys - present), "ceiling_over": ceiling_over}
    return out


def listing(app, ifname: str) -> dict:
    privileges.require_bpf("reading xdpctl's rules")
    target = _managed(app, ifname)
    current = Current.read(target)
    return {
        "ifname": ifname,
        "policy": current.options.policy,
        "rules": describe(current.rules, hits_of(target, current.rules), limit_counts(target, current.rules)),
    }
