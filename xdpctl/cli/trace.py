"""xdpctl trace IFACE... -w FILE [selection] [--count N] [--duration S]"""

from __future__ import annotations

import click

from ..datapath import contract
from .params import IFACE, json_option

VERDICTS = ("any", *contract.VERDICTS)


@click.command()
@click.argument("ifaces", nargs=-1, required=True, type=IFACE)
@click.option("-w", "--write", "path", required=True, metavar="FILE",
              help="The pcapng file to write (made or emptied; a link is refused), or - for stdout.")
@click.option("--verdict", "verdicts", type=click.Choice(VERDICTS), multiple=True, default=("drop",),
              show_default=True, help="Frames the filter gave this verdict (repeat for several; any: all).")
@click.option("--rule", metavar="ID|policy|drop-non-ip|ban", default=None,
              help="Frames this rule decided (its id in `xdpctl rule list`), or the policy, or --drop-non-ip, or the ban list.")
@click.option("--class", "classes", multiple=True, metavar="CLASS",
              help="Frames of this class (ipv4/udp, arp, ...; ipv4 or ipv6: the whole family); repeat for several.")
@click.option("--sample", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Keep one selected frame in N, on each CPU (decided in the program).")
@click.option("--snaplen", type=click.IntRange(1, contract.TRACE_CAP_MAX), default=contract.TRACE_CAP_MAX,
              show_default=True, metavar="BYTES", help="Copy at most this many bytes of each frame.")
@click.option("-c", "--count", type=click.IntRange(min=0), default=0, metavar="N",
              help="Stop after N frames are captured (0: no limit).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=False), default=0.0, metavar="SECONDS",
              help="Stop after this long (0: no limit).")
@json_option
@click.pass_obj
def command(app, ifaces, path, verdicts, rule, classes, sample, snaplen, count, duration, as_json):
    """Capture the frames the filter decided on IFACE to pcapng, until Ctrl-C.

    By default the frames it dropped. Every packet carries a comment naming
    its verdict, the rule that decided it (or the policy, --drop-non-ip, or the ban list)
    and its class: verdict=drop rule=3 class=ipv4/udp. Timestamps are the
    kernel's.

    While the trace runs, IFACE carries its program with a capture path
    compiled in (swapped in and out atomically; counters and rules go on);
    otherwise the program has none. The end report (stderr; with --json, a
    JSON document on stdout, or on stderr when -w -) says how many frames
    were captured, how many the selection matched and how many were lost
    because the ring buffer was full. One trace per interface at a time.
    Ctrl-C, SIGTERM, --count and --duration end it cleanly (exit 0).
    """
    import sys

    from ..observe.capture import Selection, trace
    from ..safe_files import open_stream
    from .output import note

    selection = Selection(verdicts=tuple(verdicts), classes=tuple(classes), rule=rule, sample=sample,
                          snaplen=snaplen)
    selection.check()  # before anything is opened or changed
    stream = path == "-"
    if stream and sys.stdout.isatty():
        from ..errors import BadInput

        raise BadInput("-w - writes pcapng to stdout, which is a terminal; pipe it (| tshark -r -) or give a file")
    opened = []

    def open_output():
        opened.append(sys.stdout.buffer if stream else open_stream(path))
        return opened[0]

    try:
        report = trace(app, list(ifaces), selection, open_output, path, count=count, duration=duration,
                       stream=stream, on_started=lambda: note(f"tracing {', '.join(ifaces)} to "
                                                              f"{'stdout' if stream else path}; Ctrl-C stops"))
    finally:
        for out in opened:
            try:
                out.flush() if stream else out.close()
            except BrokenPipeError:
                pass
    if as_json:
        import json

        text = json.dumps(report.as_dict(), indent=2) + "\n"
        (sys.stderr if stream else sys.stdout).write(text)
    else:
        from .render import print_trace_report

        print_trace_report(report.as_dict())
