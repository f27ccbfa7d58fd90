"""xdpctl ban list|add|del"""

from __future__ import annotations

import click

from .params import IFACE, json_option


@click.group()
def command():
    """The ban list of an interface: sources whose frames are dropped before
    any rule, until their ban ends.

    \b
    A rule with --over RATE --block DURATION bans a source that goes over
    the rate; `ban add` and `ban del` edit the list by hand. Changes take
    effect at once, with no reload, except the first `ban add` on a program
    without a ban list: it swaps in the same program with one.
    """


@command.command("list")
@click.argument("iface", type=IFACE)
@json_option
@click.pass_obj
def list_(app, iface, as_json):
    """The banned sources, with the time left and the frames dropped since the ban."""
    from ..lifecycle.bans import listing

    data = listing(app, iface)
    if as_json:
        from .output import emit_json

        emit_json(data)
        return
    if not data["bans"]:
        click.echo(f"{iface}: no bans")
        return
    from ..rules.limits import show_duration

    click.echo(f"{'address':<40} {'left':>10} {'packets':>12} {'bytes':>14}  rule")
    for b in data["bans"]:
        rule = "ban add" if b["rule"] is None else str(b["rule"])
        click.echo(f"{b['address']:<40} {show_duration(b['seconds_left']):>10} {b['packets']:>12,} "
                   f"{b['bytes']:>14,}  {rule}")


@command.command("add")
@click.argument("iface", type=IFACE)
@click.argument("address")
@click.option("--for", "duration", metavar="DURATION", required=True, help="How long: 30s, 10m, 1h, 2d.")
@click.pass_obj
def add(app, iface, address, duration):
    """Ban ADDRESS (an IPv4 or IPv6 source) on IFACE for DURATION."""
    from ..lifecycle.bans import add as add_ban, parse_address
    from ..rules.limits import parse_duration, show_duration

    parse_address(address)
    seconds = parse_duration(duration, "--for")
    done = add_ban(app, iface, address, seconds)
    click.echo(f"banned {done['address']} on {iface} for {show_duration(seconds)}"
               + (f" ({iface}'s program had no ban list: a new one with it was swapped in)" if done["compiled"] else ""))


@command.command("del")
@click.argument("iface", type=IFACE)
@click.argument("address")
@click.pass_obj
def delete(app, iface, address):
    """Lift the ban on ADDRESS."""
    from ..lifecycle.bans import delete as del_ban

    done = del_ban(app, iface, address)
    click.echo(f"lifted the ban on {done['address']} on {iface}")
