"""What the program will count for a given set of frames: per protocol
class and verdict, packets and bytes; and per rule, its hits. Pure
Python, from xdpctl/datapath/classify.py and the rules' reference semantics: the
tests and `selftest` compare the kernel's counters with it. A redirect is
predicted to succeed (its target there and able to take the frame)."""

from __future__ import annotations

from ..datapath import contract, counters
from ..datapath.classify import parse
from ..datapath.program import FilterOptions
from ..rules import actions
from ..rules.model import Rule, decide, parse_match

# The verdict a rule's action ends in, when it succeeds.
VERDICT_OF_ACTION = {contract.ACTION_PASS: "pass", contract.ACTION_DROP: "drop",
                     contract.ACTION_REDIRECT: "redirect", contract.ACTION_REDIRECT_CPU: "redirect",
                     contract.ACTION_TX: "tx"}


def rules_from_json(entries: list[dict]) -> list[Rule]:
    """Rules as `rule list --json` and `stats --json` show them."""
    out = []
    for i, e in enumerate(entries):
        action, steer = actions.parse(e["action"], ",".join(e["to"]) if "to" in e else None, e.get("cpu"),
                                      e.get("queue"))
        out.append(Rule(
            action=action,
            match=parse_match(e["match"]),
            priority=e["priority"], priority_set=True,
            id=e["id"], seq=i, slot=e["id"], steer=steer,
        ))
    return out


def predict(frames: list[bytes], counts: list[int], rules: list[Rule], options: FilterOptions):
    """(counters in the stats shape, {rule id: {"packets", "bytes"}})."""
    out = counters.empty()
    hits: dict[int, dict[str, int]] = {r.id: {"packets": 0, "bytes": 0} for r in rules}
    for frame, n in zip(frames, counts):
        if not n:
            continue
        p = parse(frame)
        winner = None
        if options.drop_non_ip and not p.is_ip:
            verdict = "drop"
        else:
            winner = decide(rules, p) if len(frame) >= 14 else None
            if winner is None:
                verdict = "drop" if options.policy_deny else "pass"
            else:
                verdict = VERDICT_OF_ACTION[winner.action]
        c = out[p.cls][verdict]
        c["packets"] += n
        c["bytes"] += n * len(frame)
        if winner is not None:
            hits[winner.id]["packets"] += n
            hits[winner.id]["bytes"] += n * len(frame)
    return out, hits
