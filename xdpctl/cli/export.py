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
    import os

    from ..apply import export

    text = export(app, ifaces)
    if not output:
        click.echo(text, nl=False)
        return
    tmp = f"{output}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, output)
    click.echo(f"wrote {output}")
