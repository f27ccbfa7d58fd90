"""xdpctl attach IFACE"""

from __future__ import annotations

import click

from .params import IFACE


@click.command()
@click.argument("iface", type=IFACE)
@click.option("--drop-non-ip", is_flag=True, help="Drop every frame that is not IPv4 or IPv6 (ARP too).")
@click.option("--mode", type=click.Choice(["native", "generic", "offload"]), default="native",
              show_default=True, help="XDP mode. There is no fallback: native fails where unsupported.")
@click.option("--policy", type=click.Choice(["allow", "deny"]), default="allow", show_default=True,
              help="What happens to frames no rule decides: allow passes them, deny drops them.")
@click.option("--force", is_flag=True, help="Replace an XDP program that xdpctl did not load.")
@click.option("--flow-timeouts", metavar="NAME=S[,...]",
              help="Idle timeouts of --established's flows, in seconds: tcp, udp, icmp, closing "
                   "(defaults 300, 60, 30, 10).")
@click.option("--flow-table-size", metavar="N",
              help="Flows the table of --established holds (default 262144), set before it is made.")
@click.option("--ebpf", is_flag=True, hidden=True, help="Print the C and flags that would be compiled, and exit.")
@click.pass_obj
def command(app, iface, drop_non_ip, mode, policy, force, ebpf, flow_timeouts, flow_table_size):
    """Compile the filter with BCC and attach it to IFACE.

    With no filter option the program passes everything and only counts.
    Attaching again to an interface xdpctl manages replaces its program
    atomically and keeps the counters.
    """
    from ..datapath.flow_table import parse_entries, parse_timeouts
    from ..datapath.program import FilterOptions

    options = FilterOptions(drop_non_ip=drop_non_ip, policy_deny=policy == "deny")
    timeouts = parse_timeouts(flow_timeouts) if flow_timeouts is not None else None
    entries = parse_entries(flow_table_size) if flow_table_size is not None else None
    if ebpf:
        from ..datapath.program import filter_program, render_source

        click.echo(render_source(filter_program(options, "/sys/fs/bpf/xdpctl/ns<netns>/if<ifindex>")))
        return
    from ..lifecycle.attach import attach
    from .output import note

    result = attach(app, iface, mode=mode, options=options, force=force, flow_timeouts=timeouts,
                    flow_entries=entries)
    for line in result.notes:
        note(line)
    if result.flow_settings is not None:
        s = result.flow_settings
        click.echo(f"{result.ifname}: flow timeouts " + ", ".join(f"{n} {t} s" for n, t in s.describe_timeouts().items())
                   + f"; flow table of {s.entries:,} flows")
    if result.egress_restored:
        click.echo(f"{result.ifname}: put back the egress program of --established, which was missing")
    opts = ", ".join(options.describe()) or ("rules only" if result.rules else "count only")
    if result.replaced == "unchanged" and (result.flow_settings is not None or result.egress_restored):
        click.echo(f"{result.ifname}: its program is unchanged: prog {result.prog_id} ({result.mode}, {opts})")
        return
    if result.replaced == "unchanged":
        click.echo(f"{result.ifname} already carries xdpctl's program with these options: prog {result.prog_id} "
                   f"({result.mode}, {opts}); nothing changed")
        return
    what = {"own": "replaced xdpctl's program on", "foreign": "replaced a foreign program on"}.get(
        result.replaced, "attached to")
    rules = f", {result.rules} rule{'s' if result.rules != 1 else ''} kept" if result.rules else ""
    click.echo(f"{what} {result.ifname}: prog {result.prog_id} ({result.mode}, {opts}{rules})")
