"""xdpctl exporter [--listen ADDR:PORT] [--no-rule-metrics]"""

from __future__ import annotations

import click

from .. import validate
from ..errors import BadInput

DEFAULT_LISTEN = "127.0.0.1:9435"


class ListenAddress(click.ParamType):
    name = "ADDR:PORT"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return validate.listen_address(value)
        except BadInput as exc:
            self.fail(str(exc), param, ctx)


@click.command()
@click.option("--listen", type=ListenAddress(), default=DEFAULT_LISTEN, show_default=True, metavar="ADDR:PORT",
              envvar="XDPCTL_EXPORTER_LISTEN", show_envvar=True,
              help="Where to serve /metrics: an IPv4 address, or an IPv6 one in brackets ([::1]:9435). "
                   "Any other than loopback must be given: 0.0.0.0:9435 listens on every IPv4 address.")
@click.option("--rule-metrics/--no-rule-metrics", default=True, show_default=True,
              envvar="XDPCTL_EXPORTER_RULE_METRICS", show_envvar=True,
              help="Export each rule's hits (two series a rule: turn them off for very large rule sets).")
@click.pass_obj
def command(app, listen, rule_metrics):
    """Serve xdpctl's counters as Prometheus metrics, until stopped.

    \b
    xdpctl_packets_total, xdpctl_bytes_total   {interface, netns, class, action}
    xdpctl_rule_packets_total, ..._bytes_total  {interface, netns, rule}
    xdpctl_program_info                         {interface, netns, prog_id, mode, options}
    xdpctl_flows, xdpctl_flow_table_entries,    {interface, netns}
    xdpctl_flow_table_size  (--established)

    Every scrape reads the pinned maps of every namespace: interfaces
    attached or detached meanwhile appear and go without a restart. It
    compiles nothing, takes no lock and changes nothing. Ctrl-C stops it
    (exit 130), and SIGTERM (exit 0). See docs/monitoring.md.
    """
    from ..observe import exporter
    from .output import note

    exporter.run(app, listen, rule_metrics=rule_metrics,
                 ready=lambda url: note(f"serving xdpctl's metrics on {url}"),
                 warn=lambda line: note(f"xdpctl: warning: {line}"))
