"""Counter decoding (per-CPU sums), rates, the JSON schema and the human
tables (which must fit 80 columns)."""

from __future__ import annotations

import io
import json
import struct

from rich.console import Console

from xdpctl.datapath import contract, counters
from xdpctl.cli import render
from xdpctl.cli.output import emit_json


def per_cpu(*cpus):
    """Per-CPU struct xdpctl_class_counters: (pass pkts, bytes, drop pkts, bytes)."""
    return b"".join(contract.CLASS_COUNTERS.pack(*c) for c in cpus)


def key(cls):
    return struct.pack("<I", contract.CLASS_CODES[cls])


def sample_entries():
    return [
        (key("ipv4/udp"), per_cpu((3, 300, 0, 0), (4, 400, 0, 0))),
        (key("arp"), per_cpu((0, 0, 1, 42), (0, 0, 0, 0))),
        (key("other"), per_cpu((0, 0, 0, 0), (0, 0, 2, 120))),
    ]


def test_decode_sums_every_cpu():
    c = counters.decode(sample_entries())
    assert c["ipv4/udp"]["pass"] == {"packets": 7, "bytes": 700}
    assert c["arp"]["drop"] == {"packets": 1, "bytes": 42}
    assert c["other"]["drop"] == {"packets": 2, "bytes": 120}
    assert c["ipv6/tcp"]["pass"] == {"packets": 0, "bytes": 0}
    assert list(c) == list(contract.CLASSES)


def test_total_is_the_sum_of_classes():
    t = counters.total(counters.decode(sample_entries()))
    assert t == {"pass": {"packets": 7, "bytes": 700}, "drop": {"packets": 3, "bytes": 162}}


def test_rates_and_reset_between_readings():
    before = counters.decode(sample_entries())
    after = counters.decode([(k, per_cpu((10, 1000, 10, 1000), (10, 1000, 10, 1000))) for k, _ in sample_entries()])
    r = counters.rates(before, after, 2.0)
    assert r["ipv4/udp"]["pass"] == {"pps": (20 - 7) / 2, "bps": (2000 - 700) * 8 / 2}
    # A reset makes the counters go down: the rate is 0, not negative.
    assert counters.rates(after, before, 1.0)["ipv4/udp"]["pass"] == {"pps": 0.0, "bps": 0.0}


def stats_data():
    c = counters.decode(sample_entries())
    return {"interfaces": [{
        "ifname": "eth0", "ifindex": 2, "mode": "native", "prog_id": 42, "prog_name": "xdpctl_filter",
        "managed": True, "options": ["drop-non-ip"], "attached_at": "2026-11-24T18:00:00Z",
        "counters": c, "total": counters.total(c),
    }]}


def test_json_schema(capsys):
    emit_json(stats_data())
    data = json.loads(capsys.readouterr().out)
    (entry,) = data["interfaces"]
    for key in ("ifname", "ifindex", "mode", "prog_id", "managed", "counters"):
        assert key in entry
    assert set(entry["counters"]) == set(contract.CLASSES)
    for per_verdict in entry["counters"].values():
        assert set(per_verdict) == {"pass", "drop"}
        for c in per_verdict.values():
            assert set(c) == {"packets", "bytes"} and all(isinstance(v, int) for v in c.values())


def rendered(table) -> list[str]:
    console = Console(file=io.StringIO(), width=80, record=True)
    console.print(table)
    return console.export_text().splitlines()


def test_stats_table_fits_80_columns():
    data = stats_data()
    big = data["interfaces"][0]
    for cls in contract.CLASSES:
        for v in ("pass", "drop"):
            big["counters"][cls][v] = {"packets": 987_654_321_012, "bytes": 123_456_789_012_345}
    big["total"] = counters.total(big["counters"])
    lines = rendered(render.counters_table(big))
    assert max(map(len, lines)) <= 80
    for cls in contract.CLASSES:  # a class name never wraps
        assert any(line.strip().startswith(cls + " ") for line in lines), cls


def test_rates_table_fits_80_columns():
    entry = stats_data()["interfaces"][0]
    rates = counters.rates(entry["counters"], entry["counters"], 1)
    for cls in contract.CLASSES:
        rates[cls]["pass"] = {"pps": 14_880_000.0, "bps": 99_999_000_000.0}
    lines = rendered(render.rates_table(entry, rates))
    assert max(map(len, lines)) <= 80


def test_status_table_fits_80_columns():
    data = {"interfaces": [
        {"ifname": "enp129s0f1np1", "ifindex": 12345, "mode": "generic", "prog_id": 123456,
         "prog_name": "xdpctl_filter", "managed": True, "options": ["drop-non-ip"],
         "attached_at": "2026-11-24T18:00:00Z"},
        {"ifname": "eth1", "ifindex": 3, "mode": "native", "prog_id": 77, "prog_name": "xdp_dispatcher",
         "managed": False},
    ]}
    lines = rendered(render.status_table(data))
    assert max(map(len, lines)) <= 80
    text = "\n".join(lines)
    assert "xdpctl_filter" in text and "xdp_dispatcher" in text and "drop-non-ip" in text


def test_status_table_says_an_interface_is_changing():
    data = {"interfaces": [
        {"ifname": "eth0", "ifindex": 2, "mode": "native", "prog_id": 81, "prog_name": "xdpctl_filter",
         "managed": False, "in_flight": True},
    ]}
    lines = rendered(render.status_table(data))
    assert max(map(len, lines)) <= 80
    assert "changing (another xdpctl)" in "\n".join(lines)


def test_numbers_are_exact_until_ten_million():
    assert render.number(9_999_999) == "9,999,999"
    assert render.number(12_345_678) == "12.35M"
    assert render.rate(1_500_000, "b") == "1.5Mb"


def test_watch_redraws_rates(monkeypatch):
    second = stats_data()
    second["interfaces"][0]["counters"]["ipv4/udp"]["pass"] = {"packets": 107, "bytes": 10700}
    readings = iter([stats_data(), second])
    console = Console(file=io.StringIO(), width=80, record=True)
    monkeypatch.setattr(render, "_out", console)
    monkeypatch.setattr(render.time, "sleep", lambda s: None)
    render.watch(lambda: next(readings), counters.rates, interval=1.0, iterations=1)
    text = console.export_text()
    assert "pkt/s" in text and "ipv4/udp" in text and "eth0" in text
