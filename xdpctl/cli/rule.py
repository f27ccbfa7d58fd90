"""xdpctl rule add|del|list"""

from __future__ import annotations

import click

from .params import IFACE, complete_rule_ids, json_option


@click.group()
def command():
    """Filtering rules of an interface xdpctl manages.

    \b
    A rule matches when all its matches hold; the matching rule with the
    lowest priority number decides (rules without one get 1000 and keep
    their insertion order); with no match the interface policy decides.
    A rule with --over matches only the frames that go over its rate.
    """


MATCH_OPTIONS = [
    click.option("--src", metavar="CIDR", help="Source IPv4/IPv6 prefix or address."),
    click.option("--dst", metavar="CIDR", help="Destination IPv4/IPv6 prefix or address."),
    click.option("--proto", metavar="P", help="tcp, udp, icmp, icmpv6 or a number."),
    click.option("--sport", metavar="PORT[-PORT]", help="TCP/UDP source port or range."),
    click.option("--dport", metavar="PORT[-PORT]", help="TCP/UDP destination port or range."),
    click.option("--src-mac", metavar="MAC"),
    click.option("--dst-mac", metavar="MAC"),
    click.option("--vlan", metavar="ID", help="Outer VLAN id."),
    click.option("--ethertype", metavar="TYPE", help="EtherType after the VLAN tags, like 0x88cc."),
    click.option("--tcp-flags", metavar="FLAGS", help="Flags that must be set, !flag for clear: syn,!ack."),
    click.option("--icmp-type", metavar="N", help="ICMP or ICMPv6 type."),
    click.option("--icmp-code", metavar="N", help="ICMP or ICMPv6 code (with --icmp-type)."),
    click.option("--established", is_flag=True, default=None,
                 help="Replies to flows this host opened on the interface (a TC egress program records them)."),
]


LIMIT_OPTIONS = [
    click.option("--over", metavar="RATE",
                 help="Match only frames over RATE (N/s, N/min, N/h, N[k|m|g]bit/s, N[k|m|g]bytes/s).",),
    click.option("--burst", metavar="N", help="With --over: frames (bytes, bits) above the rate at once "
                 "(default: one second of it)."),
    click.option("--per", metavar="KEY", help="With --over: a bucket per src (default), src/N, src/N,M "
                 "(IPv4 /N, IPv6 /M), flow, or one for the rule."),
    click.option("--table", metavar="N", help="With --over: the most keys the rule's table holds "
                 "(default 65536; the oldest go first)."),
    click.option("--ceiling", metavar="RATE|none", help="With --over: what sources not in the table pass "
                 "together (default 64 times the rate)."),
    click.option("--block", metavar="DURATION", help="With --over: ban a source that goes over, for "
                 "DURATION (30s, 10m, 1h, 2d)."),
]


def limit_options(f):
    for opt in reversed(LIMIT_OPTIONS):
        f = opt(f)
    return f


def match_options(f):
    for opt in reversed(MATCH_OPTIONS):
        f = opt(f)
    return f


@command.command("add")
@click.argument("iface", type=IFACE)
@click.argument("action", type=click.Choice(["pass", "drop", "redirect", "tx"]))
@match_options
@limit_options
@click.option("--priority", metavar="N", help="0-65535, lower decides first (default 1000).")
@click.option("--to", "to", metavar="IF[,IF...]",
              help="redirect: out of these interfaces (up to 64), one per flow by a hash.")
@click.option("--cpu", metavar="N", help="redirect: on to the kernel's stack on CPU N.")
@click.option("--queue", metavar="N", help="With --cpu: the CPU's queue, in frames (default 2048).")
@json_option
@click.pass_obj
def add(app, iface, action, priority, to, cpu, queue, as_json, **values):
    """Add a rule: ACTION for frames matching every option.

    \b
    pass      on to the kernel's stack
    drop      dropped
    redirect  out of other interfaces (--to) or to another CPU (--cpu)
    tx        back out of IFACE, source and destination MACs swapped
    """
    from ..lifecycle.ruleops import add as add_rule
    from ..rules import actions
    from ..rules.limits import LIMIT_KEYS
    from ..rules.model import parse_limit, parse_match, parse_priority
    from .output import note

    code, steer = actions.parse(action, to, cpu, queue)
    limit_values = {k: values.pop(k) for k in LIMIT_KEYS}
    match = parse_match(values)
    limit = parse_limit(limit_values, match)
    prio = parse_priority(priority) if priority is not None else None
    change = add_rule(app, iface, code, match, prio, steer, limit)
    for line in change.notes:
        note(line)
    if as_json:
        from .output import emit_json

        emit_json({"ifname": iface, "rule": change.rule.describe(), "recompiled": change.compiled,
                   "prog_id": change.prog_id})
        return
    how = f"recompiled and replaced the program (prog {change.prog_id})" if change.compiled else "maps only"
    click.echo(f"added rule {change.rule.id} to {iface}: {describe(change.rule.describe())} ({how})")


@command.command("del")
@click.argument("iface", type=IFACE)
@click.argument("rule_id", metavar="ID", type=click.IntRange(min=1), shell_complete=complete_rule_ids)
@click.pass_obj
def delete(app, iface, rule_id):
    """Delete rule ID (as `xdpctl rule list` shows it)."""
    from ..lifecycle.ruleops import delete as delete_rule

    change = delete_rule(app, iface, rule_id)
    click.echo(f"deleted rule {rule_id} from {iface}: {describe(change.rule.describe())}")


@command.command("list")
@click.argument("iface", type=IFACE)
@json_option
@click.pass_obj
def list_(app, iface, as_json):
    """List the rules in decision order, with their hits."""
    from ..lifecycle.ruleops import listing

    data = listing(app, iface)
    if as_json:
        from .output import emit_json

        emit_json(data)
        return
    from .render import print_rules

    print_rules(data)


def describe(rule: dict) -> str:
    """'drop src 203.0.113.0/24 proto udp dport 53 (priority 10)', 'redirect
    to eth1,eth2 proto udp (priority 1000)'"""
    parts = [rule["action"]]
    if "to" in rule:
        parts.append("to " + ",".join(rule["to"]))
    elif "cpu" in rule:
        parts.append(f"cpu {rule['cpu']} queue {rule['queue']}")
    parts += [f"{k} {rule[k]}" for k in ("over", "burst", "per", "table", "ceiling", "block") if k in rule]
    parts += [k.replace("_", "-") if v is True else f"{k.replace('_', '-')} {v}"
              for k, v in rule["match"].items()] or ["everything"]
    return " ".join(parts) + f" (priority {rule['priority']})"
