"""xdpctl flows [IFACE...]"""

from __future__ import annotations

import click

from .params import IFACE, json_option


@click.command()
@click.argument("ifaces", nargs=-1, type=IFACE)
@json_option
@click.pass_obj
def command(app, ifaces, as_json):
    """The flows --established tracks: those this host opened on IFACE.

    For each live flow: its tuple (this host's end first), its age and idle
    time, and the packets and bytes that came back. Reads the pinned table
    only: it never compiles anything. Without IFACE, every interface that has
    a flow table.
    """
    from ..observe.flows import flows

    data = flows(app, ifaces)
    if as_json:
        from .output import emit_json

        emit_json(data)
    else:
        from .render import print_flows

        print_flows(data)
