"""docs/grafana-dashboard.json: valid JSON that Grafana imports (a dashboard
with panels and their Prometheus queries), each query built on metric names
the exporter serves, and every family the exporter serves shown somewhere.
tests/kernel/test_exporter.py runs the same queries on a real Prometheus."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xdpctl.observe import exporter

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
# A metric name in PromQL: an identifier that is not a label (before = or =~),
# a function (before "("), a keyword or a template variable.
NAME = re.compile(r"(?<![\w$.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*(?:=|!=|=~|!~|\())")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
            "bool", "inf", "nan",
            # aggregation operators, which may stand before their `by (...)`
            "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
            "quantile"}


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every panel target, and the variables' queries."""
    out = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"${v['name']}", re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", q)))
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (labels, functions, keywords,
    strings, ranges and template variables left out)."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # [5m], [$__rate_interval]
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", expr)  # label lists
    expr = re.sub(r"\{[^}]*\}", "", expr)  # selectors' matchers
    return {m for m in NAME.findall(expr) if m not in KEYWORDS and not re.fullmatch(r"[0-9.e+-]+", m)}


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_is_a_dashboard_grafana_imports():
    d = load()
    assert d["title"] and d["uid"] and isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) >= 6
    for p in d["panels"]:
        assert p["type"] in ("timeseries", "table", "stat", "bargauge"), p["title"]
        assert set(p["gridPos"]) == {"x", "y", "w", "h"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        assert p["datasource"]["type"] == "prometheus" and p["targets"], p["title"]
        assert all(t["refId"] and t["expr"] for t in p["targets"])


def test_queries_use_only_names_the_exporter_serves():
    served = exporter.metric_names()
    used = set()
    for title, expr in queries(load()):
        names = metric_names(expr)
        assert names, f"{title}: {expr!r} reads no metric"
        assert names <= served, f"{title}: {sorted(names - served)} not served (served: {sorted(served)})"
        used |= names
    assert used == served, f"served but never shown: {sorted(served - used)}"


def test_the_rates_by_class_split_pass_and_drop():
    exprs = [expr for _, expr in queries(load())]
    for action in ("pass", "drop"):
        assert any(f'action="{action}"' in e and "by (interface, netns, class)" in e for e in exprs), action
    assert any("topk(10" in e and "xdpctl_rule_packets_total" in e for e in exprs)


@pytest.mark.parametrize("expr, names", [
    ('sum by (interface, class) (rate(xdpctl_packets_total{action="drop"}[$__rate_interval]))',
     {"xdpctl_packets_total"}),
    ("topk(10, increase(xdpctl_rule_packets_total[5m]))", {"xdpctl_rule_packets_total"}),
    ('a_total / on (interface) group_left b_info * 8', {"a_total", "b_info"}),
    ('xdpctl_program_info{netns=~"$netns"}', {"xdpctl_program_info"}),
    ('rate(xdpctl_packet_total[1m])', {"xdpctl_packet_total"}),
])
def test_the_name_finder_finds_names(expr, names):
    """It can fail: a misspelt name is found, and would not be served."""
    assert metric_names(expr) == names
    if names == {"xdpctl_packet_total"}:
        assert not names <= exporter.metric_names()
