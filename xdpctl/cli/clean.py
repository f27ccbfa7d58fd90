"""xdpctl clean [--dry-run]"""

from __future__ import annotations

import click

from .params import json_option


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be removed or settled.")
@json_option
@click.pass_obj
def command(app, dry_run, as_json):
    """Remove what a crash, a vanished interface or a deleted namespace left
    of xdpctl's state; settle a change that was killed midway.

    Programs that are not xdpctl's are never touched.
    """
    from ..lifecycle.clean import clean
    from .output import emit_json, note

    found, notes = clean(app, dry_run=dry_run)
    if as_json:
        emit_json({"dry_run": dry_run, "leftovers": [f.as_dict() for f in found], "notes": notes})
        return
    for n in notes:
        note(f"note: {n}")
    if not found:
        click.echo("Nothing to clean: xdpctl's state matches the interfaces.")
        return
    verb = {"remove": "would remove" if dry_run else "removed",
            "settle": "would settle" if dry_run else "settled",
            "repair": "would repair" if dry_run else "repaired"}
    for f in found:
        click.echo(f"{verb[f.action]} {f.path}: {f.what}")
