"""xdpctl doctor [--json]"""

from __future__ import annotations

import click

from .params import json_option


@click.command()
@json_option
@click.pass_obj
def command(app, as_json):
    """Check what xdpctl needs (privileges, the kernel, bpffs, BCC, kernel
    headers, the compile cache, tools) and its state; say what to do about
    each problem.

    Exits 1 when a check fails; warnings do not fail.
    """
    from ..checks.doctor import FAIL, run

    checks = run(app)
    if as_json:
        from .output import emit_json

        emit_json({"checks": [c.as_dict() for c in checks], "ok": all(c.status != FAIL for c in checks)})
    else:
        from .render import print_checks

        print_checks(checks)
    if any(c.status == FAIL for c in checks):
        raise click.exceptions.Exit(1)
