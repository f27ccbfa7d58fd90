"""xdpctl bench"""

from __future__ import annotations

import click

from .params import IFACE, json_option


@click.command()
@click.argument("iface", type=IFACE, required=False)
@click.option("--lab", "lab_name", metavar="NAME", help="Measure the program on lab NAME's interface.")
@click.option("--drop-non-ip", is_flag=True, help="Without IFACE: measure the --drop-non-ip variant.")
@click.option("--xdp-filter", "with_xdp_filter", is_flag=True,
              help="Also measure xdp-filter (all features, one port and one IP rule) on the same frames.")
@click.option("--rules", "rule_sets", metavar="N[,N...]",
              help="Measure xdpctl with N synthetic mixed rules (several sizes: the growth between them).")
@click.option("--actions", "with_actions", is_flag=True,
              help="Measure one rule deciding every frame, for each action (drop, redirect, tx), against drop.")
@click.option("--established", is_flag=True,
              help="Measure the ingress cost of --established: a program with a rule, and with "
                   "`pass --established` before it (its table holding the frames' flows).")
@click.option("--limits", "limits", is_flag=True,
              help="Measure a rule with --over against the same rule without: its key in the table, "
                   "and not (a spoofed source, the ceiling spent).")
@click.option("--egress", is_flag=True,
              help="Measure --established's TC egress program against the empty TC program.")
@click.option("--repeat", type=click.IntRange(1000, 100_000_000), default=2_000_000, show_default=True,
              help="Runs per measurement.")
@click.option("--rounds", type=click.IntRange(1, 101), default=12, show_default=True,
              help="Alternations of the programs; the report gives medians.")
@json_option
@click.pass_obj
def command(app, iface, lab_name, drop_non_ip, with_xdp_filter, rule_sets, with_actions, established, limits, egress,
            repeat,
            rounds, as_json):
    """Per-packet cost of xdpctl's program against the empty XDP program,
    through BPF_PROG_TEST_RUN, on IPv4/UDP, VLAN IPv4/UDP, IPv6/TCP and ARP.

    With IFACE (or --lab), the program is built as that interface's was, with
    its rules (an unpinned twin, so live counters are not touched).
    """
    from ..checks.bench import bench
    from ..errors import BadInput, NotManaged
    from ..kernel.privileges import require_attach
    from ..datapath.program import FilterOptions

    # What was asked is checked before what it needs: bad input is one line
    # and exit 2 for anyone.
    if iface and lab_name:
        raise BadInput("give IFACE or --lab, not both")
    if with_actions and (iface or lab_name or rule_sets or with_xdp_filter or established or egress):
        raise BadInput("--actions measures rules of its own; drop IFACE, --lab, --rules, --xdp-filter, "
                       "--established and --egress")
    if (established or egress) and (iface or lab_name or rule_sets or with_xdp_filter or (established and egress)):
        raise BadInput("--established and --egress each measure on their own: no IFACE, --lab, --rules, "
                       "--xdp-filter, nor both at once")
    require_attach("loading programs to benchmark")
    if with_actions:
        from ..checks.bench import bench_actions

        report = bench_actions(FilterOptions(drop_non_ip=drop_non_ip), repeat=repeat, rounds=rounds)
        if as_json:
            from .output import emit_json

            emit_json(report)
        else:
            from .render import print_bench_actions

            print_bench_actions(report)
        return
    if limits:
        if iface or lab_name or rule_sets or with_xdp_filter or established or egress or with_actions:
            raise BadInput("--limits measures on its own: no IFACE, --lab, --rules, --xdp-filter, --actions, "
                           "--established nor --egress")
        from ..checks.bench import bench_limits

        return _show(bench_limits(FilterOptions(drop_non_ip=drop_non_ip), repeat, rounds), as_json)
    if established or egress:
        from ..checks.bench import bench_egress, bench_established

        report = bench_egress(repeat, rounds) if egress else \
            bench_established(FilterOptions(drop_non_ip=drop_non_ip, policy_deny=True), repeat, rounds)
        return _show(report, as_json)
    options, source, rules = FilterOptions(drop_non_ip=drop_non_ip), "options given", []
    if lab_name:
        from ..traffic import lab as labs

        iface = labs.find(lab_name).host_if
    if iface:
        from ..lifecycle.target import resolve

        target = resolve(app, iface)
        if not target.ours:
            raise NotManaged(iface)
        from ..lifecycle.deploy import Current

        options = FilterOptions.from_bits(target.meta.options)
        rules = Current.read(target).rules
        source = f"as attached to {iface} (prog {target.meta.prog_id}, {len(rules)} rules)"
    sizes: tuple[int, ...] = ()
    if rule_sets:
        try:
            sizes = tuple(sorted({int(n) for n in rule_sets.split(",")}))
        except ValueError:
            raise BadInput(f"--rules takes rule counts like 10,1000; got {rule_sets!r}") from None
        if not all(1 <= n <= 16384 for n in sizes):
            raise BadInput("--rules counts must be from 1 to 16384")
        if iface:
            raise BadInput("--rules measures synthetic rule sets; drop IFACE/--lab")
    report = bench(options, source, repeat=repeat, rounds=rounds, with_xdp_filter=with_xdp_filter,
                   rule_sets=sizes, rules=rules)
    _show(report, as_json)


def _show(report: dict, as_json: bool) -> None:
    if as_json:
        from .output import emit_json

        emit_json(report)
    else:
        from .render import print_bench

        print_bench(report)
