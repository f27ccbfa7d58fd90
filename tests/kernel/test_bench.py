"""xdpctl bench: a ratio per frame against the empty program, for the options
given and for an attached interface's program with its rules."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kernel

FRAMES = {"ipv4/udp", "vlan ipv4/udp", "ipv6/tcp", "arp"}


def rows(report: dict) -> dict:
    return {r["frame"]: r for r in report["frames"]}


def test_bench_reports_a_ratio_per_frame_against_the_empty_program(xdpctl_root):
    report = xdpctl_root.json("bench", "--drop-non-ip", "--rounds", "2", "--repeat", "20000")
    assert report["program"] == {"source": "options given", "options": ["drop-non-ip"]}
    got = rows(report)
    assert set(got) == FRAMES
    for r in got.values():
        assert r["empty_ns"] > 0 and r["xdpctl_ns"] > 0
        assert r["xdpctl_ratio"] == pytest.approx(r["xdpctl_ns"] / r["empty_ns"], rel=0.5)


def test_bench_of_an_interface_builds_its_program_with_its_rules(klab):
    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp", "--dport", "53")
    klab.xdpctl("rule", "add", klab.iface, "drop", "--src", "203.0.113.0/24")
    report = klab.xdpctl.json("bench", klab.iface, "--rounds", "2", "--repeat", "20000")
    assert report["program"]["source"].startswith(f"as attached to {klab.iface} (prog ")
    assert report["program"]["source"].endswith(", 2 rules)")
    assert set(rows(report)) == FRAMES
    before = klab.counters()
    assert sum(v["packets"] for per in before.values() for v in per.values()) == 0  # a twin: live counters untouched


def test_bench_established_times_the_lookup_against_the_same_rule_without_it(xdpctl_root):
    report = xdpctl_root.json("bench", "--established", "--rounds", "3", "--repeat", "20000")
    assert report["program"]["options"] == ["policy deny"]
    assert report["baseline"] == "the empty XDP program (return XDP_PASS)"
    got = rows(report)
    assert set(got) == FRAMES
    for r in got.values():
        assert r["empty_ns"] > 0 and r["rules_ns"] > 0 and r["established_ns"] > 0
        # medians of rounds: the ratio of medians is near the median of ratios
        assert r["established_over_rules"] == pytest.approx(r["established_ns"] / r["rules_ns"], rel=0.5)


def test_bench_egress_times_the_tc_program_against_the_empty_tc_program(xdpctl_root):
    report = xdpctl_root.json("bench", "--egress", "--rounds", "3", "--repeat", "20000")
    assert report["baseline"] == "the empty TC program (return TC_ACT_UNSPEC)"
    got = rows(report)
    assert set(got) == FRAMES
    for r in got.values():
        assert r["empty_ns"] > 0 and r["egress_ns"] > 0
        assert r["egress_ratio"] == pytest.approx(r["egress_ns"] / r["empty_ns"], rel=0.5)


def test_bench_established_refuses_an_interface(xdpctl_root):
    result = xdpctl_root("bench", "lo", "--established", check=False)
    assert result.returncode == 2 and result.stderr.startswith("xdpctl: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
