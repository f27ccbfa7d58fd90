"""xdpctl selftest [--keep] [--json]"""

from __future__ import annotations

import click

from .params import json_option


@click.command()
@click.option("--keep", is_flag=True, help="Leave the lab and its program up for inspection.")
@json_option
@click.pass_obj
def command(app, keep, as_json):
    """Prove the installation end to end: check the environment, make a lab,
    attach --drop-non-ip, send every protocol class and compare each
    counter with what the program must count, check a rule's hits and UDP
    delivery, then remove it all.

    Exits 0 only when everything matches.
    """
    from ..checks.selftest import run

    rows, kept = run(app, keep=keep)
    ok = bool(rows) and all(r.ok for r in rows)
    if as_json:
        from .output import emit_json

        emit_json({"ok": ok, "checks": [r.as_dict() for r in rows], "kept_lab": kept})
    else:
        from .render import print_selftest

        print_selftest(rows, ok, kept)
    if not ok:
        raise click.exceptions.Exit(1)
