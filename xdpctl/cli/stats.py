"""xdpctl stats [IFACE...]"""

from __future__ import annotations

import click

from .params import IFACE, json_option


@click.command()
@click.argument("ifaces", nargs=-1, type=IFACE)
@json_option
@click.option("--watch", is_flag=True, help="Redraw a live table with packets/s and bits/s.")
@click.option("--interval", type=click.FloatRange(min=0.1, max=3600), default=1.0, show_default=True,
              metavar="S", help="Seconds between redraws with --watch.")
@click.option("--reset", is_flag=True,
              help="Count from zero again after this reading (and the rules' hits); no frame is lost.")
@click.pass_obj
def command(app, ifaces, as_json, watch, interval, reset):
    """Per-protocol pass/drop packets and bytes of xdpctl's programs.

    Reads the pinned counters only: it never compiles anything. Counts are
    summed over all possible CPUs; bytes are frame lengths as XDP sees them.
    """
    from ..observe.report import stats

    if watch and (as_json or reset):
        raise click.UsageError("--watch cannot be combined with --json or --reset")
    if watch:
        from ..datapath.counters import rates
        from .render import watch as live

        live(lambda: stats(app, ifaces), rates, interval)
        return
    data = stats(app, ifaces, reset=reset)
    if as_json:
        from .output import emit_json

        emit_json(data)
    else:
        from .render import print_stats

        print_stats(data)
