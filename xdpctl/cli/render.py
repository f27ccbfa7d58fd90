"""The only module that renders with rich: tables for people, sized to fit 80
columns. Machine-readable output (--json) never comes through here.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..datapath import contract

_out = Console(highlight=False)
_err = Console(stderr=True, highlight=False)


def number(n: float) -> str:
    """Exact below ten million, compact (k, M, G, T) above."""
    if n < 10_000_000:
        return f"{int(n):,}" if float(n).is_integer() else f"{n:,.1f}"
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:,.0f}"


def rate(n: float, unit: str) -> str:
    for prefix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{prefix}{unit}"
    return f"{n:.0f}{unit}"


def _title(entry: dict) -> str:
    parts = [f"[bold]{entry['ifname']}[/]", f"ifindex {entry['ifindex']}", entry.get("mode") or "-"]
    if entry.get("prog_id"):
        parts.append(f"prog {entry['prog_id']} {entry.get('prog_name') or ''}".rstrip())
    parts.extend(entry.get("options") or [])
    return "  ".join(parts)


def status_table(data: dict) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("interface", no_wrap=True)
    table.add_column("mode", no_wrap=True)
    table.add_column("prog id", justify="right", no_wrap=True)
    table.add_column("name", no_wrap=True)
    table.add_column("xdpctl", max_width=28)
    for e in data["interfaces"]:
        if e["managed"]:
            since = (e.get("attached_at") or "").replace("T", " ")[5:16]
            managed = f"yes, since {since}Z"
            if e.get("options"):
                managed += "\n" + ", ".join(e["options"])
            if e.get("egress"):
                eg = e["egress"]
                managed += f"\negress prog {eg['prog_id']}" + ("" if eg["attached"] else " missing")
            if e.get("trace"):
                managed += f"\ntraced (xdpctl trace, pid {e['trace']['pid']})"
        else:
            managed = "no"
        if e.get("in_flight"):
            managed = "changing (another xdpctl)"
        table.add_row(e["ifname"], e["mode"] or "-", str(e["prog_id"] or "-"), e.get("prog_name") or "?", managed)
    return table


def print_status(data: dict) -> None:
    if not data["interfaces"]:
        _out.print("No interface carries an XDP program.")
    else:
        _out.print(status_table(data))
    for s in data.get("in_flight", []) + data.get("stale", []):
        _err.print(f"note: {s['ifname']}: {s['reason']}")
    for e in data["interfaces"]:
        for w in e.get("warnings", []):
            _err.print(f"warning: {e['ifname']}: {w['message']}", markup=False)


# Verdicts beyond pass and drop (contract.VERDICTS): their columns are shown
# once an interface has any of them, or rules that take them.
STEERED = tuple(v for v in contract.VERDICTS if v not in ("pass", "drop"))


def _steers(entry: dict) -> bool:
    """Whether to show every verdict (packets only) instead of pass and drop
    (packets and bytes): 80 columns hold one or the other."""
    if any(r["action"] in ("redirect", "tx") for r in entry.get("rules") or ()):
        return True
    return any(c.get(v, {}).get("packets") for c in entry["counters"].values() for v in STEERED)


def _all_verdicts_table(entry: dict) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("class")
    for col in (*contract.VERDICTS, "bytes"):
        table.add_column(col, justify="right")

    def row(name: str, c: dict) -> None:
        table.add_row(name, *(number(c[v]["packets"]) for v in contract.VERDICTS),
                      number(sum(c[v]["bytes"] for v in contract.VERDICTS)))

    for cls in contract.CLASSES:
        row(cls, entry["counters"][cls])
    table.add_section()
    row("[bold]total[/]", entry["total"])
    return table


def counters_table(entry: dict) -> Group:
    if _steers(entry):
        return Group(Text.from_markup(_title(entry)), _all_verdicts_table(entry))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("class")
    for col in ("pass pkts", "pass bytes", "drop pkts", "drop bytes"):
        table.add_column(col, justify="right")
    for cls in contract.CLASSES:
        c = entry["counters"][cls]
        table.add_row(cls, number(c["pass"]["packets"]), number(c["pass"]["bytes"]),
                      number(c["drop"]["packets"]), number(c["drop"]["bytes"]))
    t = entry["total"]
    table.add_section()
    table.add_row("[bold]total[/]", number(t["pass"]["packets"]), number(t["pass"]["bytes"]),
                  number(t["drop"]["packets"]), number(t["drop"]["bytes"]))
    return Group(Text.from_markup(_title(entry)), table)


def print_stats(data: dict) -> None:
    if not data["interfaces"]:
        _out.print("No interface carries an xdpctl program; `xdpctl attach IFACE` attaches one.")
        return
    parts = []
    for e in data["interfaces"]:
        parts.append(counters_table(e))
        if e.get("rules"):
            parts.append(rules_table({"rules": e["rules"]}))
    _out.print(Group(*parts))


def rates_table(entry: dict, rates: dict) -> Group:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("class")
    if _steers(entry):
        for col in contract.VERDICTS:
            table.add_column(f"{col}/s", justify="right")
        table.add_column("bit/s", justify="right")
        for cls in contract.CLASSES:
            r = rates[cls]
            table.add_row(cls, *(rate(r[v]["pps"], "") for v in contract.VERDICTS),
                          rate(sum(r[v]["bps"] for v in contract.VERDICTS), "b"))
        return Group(Text.from_markup(_title(entry)), table)
    for col in ("pass pkts", "pkt/s", "bit/s", "drop pkts", "pkt/s", "bit/s"):
        table.add_column(col, justify="right")
    for cls in contract.CLASSES:
        c, r = entry["counters"][cls], rates[cls]
        table.add_row(cls,
                      number(c["pass"]["packets"]), rate(r["pass"]["pps"], ""), rate(r["pass"]["bps"], "b"),
                      number(c["drop"]["packets"]), rate(r["drop"]["pps"], ""), rate(r["drop"]["bps"], "b"))
    return Group(Text.from_markup(_title(entry)), table)


def watch(sample: Callable[[], dict], rates_of: Callable[[dict, dict, float], dict],
          interval: float, iterations: int | None = None) -> None:
    """Redraw a live table of counters and rates until Ctrl-C."""
    prev, t_prev = sample(), time.monotonic()
    with Live(Text("waiting for the first interval..."), console=_out, auto_refresh=False) as live:
        n = 0
        while iterations is None or n < iterations:
            time.sleep(interval)
            cur, t_cur = sample(), time.monotonic()
            before = {e["ifindex"]: e for e in prev["interfaces"]}
            tables = []
            for e in cur["interfaces"]:
                old = before.get(e["ifindex"], e)
                tables.append(rates_table(e, rates_of(old["counters"], e["counters"], t_cur - t_prev)))
            if not tables:
                tables = [Text("No interface carries an xdpctl program.")]
            live.update(Group(*tables), refresh=True)
            prev, t_prev = cur, t_cur
            n += 1


@contextlib.contextmanager
def progress(count: int | None, duration: float | None) -> Iterator[Callable[[int], None]]:
    """A progress bar for a bounded send; yields a callback taking frames sent."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=_err, transient=True) as bar:
        task = bar.add_task("send", total=count)
        last = [0.0]

        def advance(sent: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.1:  # redrawing per batch would cost more than sending
                last[0] = now
                bar.update(task, completed=sent)

        yield advance


def print_sent(report: dict) -> None:
    (entry,) = report["interfaces"]
    table = Table(title=f"sent towards [bold]{entry['ifname']}[/]", box=box.SIMPLE_HEAD, pad_edge=False,
                  title_justify="left")
    table.add_column("class")
    table.add_column("packets", justify="right")
    table.add_column("bytes", justify="right")
    for cls in contract.CLASSES:
        c = entry["counters"][cls]["sent"]
        table.add_row(cls, number(c["packets"]), number(c["bytes"]))
    _out.print(table)
    _out.print(f"{report['frames']:,} frames ({report['distinct_frames']} distinct) in "
               f"{report['seconds']:.3f} s: {rate(report['fps'], ' frames/s')}")


def rules_table(data: dict) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("prio", justify="right", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("match", ratio=1)
    table.add_column("packets", justify="right", no_wrap=True)
    table.add_column("bytes", justify="right", no_wrap=True)
    for r in data["rules"]:
        match = " ".join(k.replace("_", "-") if v is True else f"{k.replace('_', '-')} {v}"
                         for k, v in r["match"].items()) or "everything"
        if "to" in r:  # where a redirect sends, before what it matches
            match = f"to {','.join(r['to'])}: {match}"
        elif "cpu" in r:
            match = f"cpu {r['cpu']}: {match}"
        if "over" in r:  # a rate limit: it decides only the frames over the rate (its hits)
            seen = r.get("limit")
            keys = f", {number(seen['keys'])} of {number(r['table'])} keys" if seen and "table" in r else ""
            extra = (f", {number(seen['within']['packets'])} within{keys}, {number(seen['evictions'])} evicted"
                     if seen else "")
            match = f"over {r['over']} per {r['per']}{extra}: {match}"
        table.add_row(str(r["id"]), str(r["priority"]), r["action"], match,
                      number(r["hits"]["packets"]), number(r["hits"]["bytes"]))
    return table


def print_rules(data: dict) -> None:
    _out.print(f"[bold]{data['ifname']}[/]  policy {data['policy']}: frames no rule decides "
               f"{'pass' if data['policy'] == 'allow' else 'are dropped'}")
    if not data["rules"]:
        _out.print("No rules; `xdpctl rule add` adds one.")
        return
    _out.print(rules_table(data))


FLOWS_SHOWN = 200  # rows of a table; --json lists every flow


def _end(address: str, port) -> str:
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def flows_table(flows: list[dict]) -> Table:
    """Flows in 80 columns: this host's end over the remote one (a closing
    TCP flow shows as tcp/fin)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("proto", no_wrap=True)
    table.add_column("this host / remote", overflow="fold", ratio=1)
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("idle", justify="right", no_wrap=True)
    table.add_column("pkts back", justify="right", no_wrap=True)
    table.add_column("bytes back", justify="right", no_wrap=True)
    for f in flows[:FLOWS_SHOWN]:
        host = _end(f["host"], f["host_port"]) if f["icmp_id"] is None else f"{f['host']} id {f['icmp_id']}"
        proto = f["proto"] + ("/fin" if f["state"] == "closing" else "")
        ends = Text(f"{host}\n{_end(f['remote'], f['remote_port'])}")  # [v6]:port is no markup
        table.add_row(proto, ends, _seconds(f["age_s"]),
                      _seconds(f["idle_s"]), number(f["packets_back"]), number(f["bytes_back"]))
    return table


def print_flows(data: dict) -> None:
    if not data["interfaces"]:
        _out.print("No interface has a flow table; `xdpctl rule add IFACE pass --established` makes one.")
        return
    for e in data["interfaces"]:
        timeouts = ", ".join(f"{name} {s}s" for name, s in e["timeouts"].items())
        eg = e.get("egress")
        prog = f"egress prog {eg['prog_id']}" + ("" if eg["attached"] else " (missing!)") if eg else "no egress program"
        t = e["table"]
        if t is None:
            _out.print(f"[bold]{e['ifname']}[/]  no flow table (no --established rule)\ntimeouts {timeouts}")
            continue
        _out.print(f"[bold]{e['ifname']}[/]  {t['live']:,} live flow{'' if t['live'] == 1 else 's'} "
                   f"({t['expired']:,} expired) in a table of {t['size']:,}, {prog}\ntimeouts {timeouts}")
        if e["flows"]:
            _out.print(flows_table(e["flows"]))
        if len(e["flows"]) > FLOWS_SHOWN:
            _out.print(f"... and {len(e['flows']) - FLOWS_SHOWN:,} more (`xdpctl flows --json` lists them all)")


def print_bench(report: dict) -> None:
    opts = ", ".join(report["program"]["options"]) or "count only"
    first = report["frames"][0]
    names = [k[: -len("_ratio")] for k in first if k.endswith("_ratio")]
    against = "empty TC program" if "TC" in report.get("baseline", "") else "empty XDP program"
    table = Table(title=f"per packet, against the {against} ({opts})",
                  box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("frame")
    table.add_column("empty", justify="right")
    for name in names:
        table.add_column(name.replace("xdpctl_", "rules ").replace("xdp_filter", "xdp-filter"), justify="right")
    growth = [k for k in first if k.startswith("growth_") or k == "established_over_rules"]
    for g in growth:
        table.add_column(g.replace("growth_", "growth ").replace("_to_", "->").replace("_over_", "/"), justify="right")
    for r in report["frames"]:
        row = [r["frame"], f"{r['empty_ns']:.1f}ns"]
        row += [f"{r[n + '_ns']:.1f}ns {r[n + '_ratio']:.2f}x" for n in names]
        row += [f"{r[g]:.2f}x" for g in growth]
        table.add_row(*row)
    _out.print(table)
    _out.print(f"{report['rounds']} rounds x {report['repeat']:,} runs per program and frame; medians. "
               "The ns are this machine's; the ratios are the figures.")


def print_bench_actions(report: dict) -> None:
    """bench --actions: a program per row, a frame per column (80 columns
    hold that, not the other way round)."""
    opts = ", ".join(report["program"]["options"]) or "count only"
    rows = report["frames"]
    names = ["no_rules", *report["actions"]]
    table = Table(title=f"per packet, one rule deciding every frame, against the empty XDP program ({opts})",
                  box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("program")
    for r in rows:
        table.add_column(r["frame"], justify="right")
    table.add_row("empty", *(f"{r['empty_ns']:.1f}ns" for r in rows))
    for name in names:
        table.add_row(name.replace("_", " "), *(f"{r[name + '_ns']:.1f}ns {r[name + '_ratio']:.2f}x" for r in rows))
    _out.print(table)
    versus = Table(title="each action against the drop rule", box=box.SIMPLE_HEAD, pad_edge=False,
                   title_justify="left")
    versus.add_column("action")
    for r in rows:
        versus.add_column(r["frame"], justify="right")
    for name in report["actions"]:
        if name != "drop":
            versus.add_row(name.replace("_", " "), *(f"{r[name + '_vs_drop']:.2f}x" for r in rows))
    _out.print(versus)
    _out.print(f"{report['rounds']} rounds x {report['repeat']:,} runs per program and frame; medians. "
               "The ns are this machine's; the ratios are the figures.")


def note(message: str) -> None:
    _err.print(message, markup=False)


def print_checks(checks) -> None:
    """doctor's (and selftest's) checks: one row each, the fix under a problem."""
    style = {"ok": "green", "warn": "yellow", "fail": "bold red"}
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("check")
    table.add_column("")
    table.add_column("detail", overflow="fold")
    for c in checks:
        detail = Text(c.detail)
        if c.hint and c.status != "ok":
            detail.append(f"\n→ {c.hint}", style="dim")
        table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", detail)
    _out.print(table)


def print_selftest(rows, ok: bool, kept: dict | None) -> None:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("check", "expected", "seen", ""):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r.check, r.expected, r.seen, Text("ok", "green") if r.ok else Text("MISMATCH", "bold red"))
    _out.print(table)
    _out.print(Text("selftest passed" if ok else "selftest FAILED", "bold green" if ok else "bold red"))
    if kept:
        _out.print(f"lab {kept['name']} is still up: `xdpctl lab down {kept['name']}` removes it")


def print_trace_report(report: dict) -> None:
    """The end of a trace, on stderr (stdout may be the capture itself)."""
    err = _err
    why = {"count": "--count reached", "duration": "--duration over", "interrupted": "interrupted",
           "terminated": "terminated", "output-closed": "the output was closed"}.get(report["ended"], report["ended"])
    err.print(f"{report['captured']:,} frame{'' if report['captured'] == 1 else 's'} captured, "
              f"{report['matched']:,} matched the selection, {report['lost']:,} lost (ring full) "
              f"in {report['seconds']:.1f} s ({why})", highlight=False, soft_wrap=True)
    if len(report["interfaces"]) > 1:
        for i in report["interfaces"]:
            err.print(f"  {i['interface']}: {i['captured']:,} captured, {i['matched']:,} matched, "
                      f"{i['lost']:,} lost", highlight=False, soft_wrap=True)
    if report["lost"]:
        err.print("[yellow]the capture is incomplete: frames were lost because the ring was full; "
                  "--sample N or a narrower selection keeps up[/]", highlight=False, soft_wrap=True)
    elif report["captured"] < report["matched"] - report["lost"]:
        err.print("(fewer captured than matched: --sample, or --count stopped it first)", highlight=False, soft_wrap=True)
