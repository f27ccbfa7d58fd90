"""xdpctl detach IFACE"""

from __future__ import annotations

import click

from .params import IFACE


@click.command()
@click.argument("iface", type=IFACE, required=False)
@click.option("--all", "every", is_flag=True, help="Every interface of the namespace that xdpctl manages.")
@click.pass_obj
def command(app, iface, every):
    """Remove xdpctl's program from IFACE (or from every interface, with
    --all), with its pins and state.

    A program that xdpctl did not load is refused and left attached.
    """
    from ..lifecycle.detach import detach, detach_all
    from ..errors import XdpctlError
    from .output import note

    if bool(iface) == every:
        raise click.UsageError("name one interface, or give --all")
    if every:
        done, failed = detach_all(app)
        for result in done:
            click.echo(f"detached prog {result.prog_id} from {result.ifname}" if not result.note
                       else f"{result.ifname}: {result.note}")
        if not done and not failed:
            click.echo("No interface carries an xdpctl program.")
        for name, message in failed[:-1]:
            note(f"xdpctl: error: {name}: {message}")
        if failed:
            raise XdpctlError(f"{failed[-1][0]}: {failed[-1][1]}"
                              + (f" ({len(failed)} interfaces failed)" if len(failed) > 1 else ""))
        return
    result = detach(app, iface)
    if result.note:
        note(f"note: {result.note}")
    else:
        click.echo(f"detached prog {result.prog_id} from {result.ifname}")
