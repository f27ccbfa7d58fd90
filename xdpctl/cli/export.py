"""xdpctl export [IFACE...]"""

from __future__ import annotations

import click

from .params import IFACE


@click.command()
@click.argument("ifaces", nargs=-1, type=IFACE)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE (mode 0600) instead of stdout.")
@click.pass_obj
def command(app, ifaces, output):
    """Write the running configuration as an xdpctl.toml file; applying it
    back changes nothing."""
    from ..lifecycle.apply import export
    from ..safe_files import write

    text = export(app, ifaces)
    if not output:
        click.echo(text, nl=False)
        return
    write(output, text, 0o600)
    click.echo(f"wrote {output}")
