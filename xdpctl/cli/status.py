"""xdpctl status"""

from __future__ import annotations

import click

from .params import json_option


@click.command()
@json_option
@click.pass_obj
def command(app, as_json):
    """List every interface with an XDP program: its mode, program id and
    name, and whether xdpctl manages it."""
    from ..observe.report import status

    data = status(app)
    if as_json:
        from .output import emit_json

        emit_json(data)
    else:
        from .render import print_status

        print_status(data)
