"""xdpctl apply FILE"""

from __future__ import annotations

import click


@click.command()
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=True, path_type=str))
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.pass_obj
def command(app, file, dry_run):
    """Make the interfaces named in FILE (xdpctl.toml) match it: their mode,
    policy, drop-non-ip and rules. Only what differs is changed; applying
    the same file again changes nothing. See docs/config-file.md."""
    from ..lifecycle.apply import apply
    from ..rules.config_file import load
    from .output import note

    config = load(file)
    result, notes = apply(app, config, dry_run=dry_run)
    lines = [line for p in result for line in p.lines]
    for line in notes:
        note(f"note: {line}")
    if not lines:
        click.echo("nothing to change: the machine already matches " + file)
        return
    for line in lines:
        click.echo(line)
    if dry_run:
        click.echo("(dry run: nothing was changed)")
    else:
        changed = sum(1 for p in result if p.changes)
        click.echo(f"applied {file}: {changed} interface{'s' if changed != 1 else ''} changed")
