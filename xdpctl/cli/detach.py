"""xdpctl detach IFACE"""

from __future__ import annotations

import click

from .params import IFACE


@click.command()
@click.argument("iface", type=IFACE)
@click.pass_obj
def command(app, iface):
    """Remove xdpctl's program from IFACE, with its pins and state.

    A program that xdpctl did not load is refused and left attached.
    """
    from ..detach import detach
    from .output import note

    result = detach(app, iface)
    if result.note:
        note(f"note: {result.note}")
    else:
        click.echo(f"detached prog {result.prog_id} from {result.ifname}")
