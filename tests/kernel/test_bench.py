"""xdpctl bench: a ratio per frame against the empty program, for the options
given and for an attached interface's program with its rules."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kernel

FRAMES = {"ipv4/udp", "vlan ipv4/udp", "ipv6/tcp", "arp"}


def rows(report: dict) -> dict:
    return {r["frame"]: r for r in report["frames"]}


def test_bench_reports_a_ratio_per_frame_against_the_empty_program(xdpctl_root):
    # One round: the median of per-round ratios is then that round's ratio,
    # which must equal the ratio of the times (with two rounds on a busy
    # machine, the median of ratios and the ratio of medians came apart).
    report = xdpctl_root.json("bench", "--drop-non-ip", "--rounds", "1", "--repeat", "20000")
    assert report["program"] == {"source": "options given", "options": ["drop-non-ip"]}
    got = rows(report)
    assert set(got) == FRAMES
    for r in got.values():
        assert r["empty_ns"] > 0 and r["xdpctl_ns"] > 0
        assert r["xdpctl_ratio"] == pytest.approx(r["xdpctl_ns"] / r["empty_ns"], rel=0.01)


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


def test_bench_actions_measures_each_action_against_drop(xdpctl_root):
    """--actions: beside the program without rules, one rule deciding every
    frame for each action, and each against the drop rule, per frame."""
    # One round: the median of per-round ratios is then that round's ratio,
    # so vs_drop must equal the ns' ratio (with two, one noisy round on a
    # busy machine moved a median of ratios 50% off the ratio of medians).
    report = xdpctl_root.json("bench", "--actions", "--rounds", "1", "--repeat", "20000")
    assert report["actions"] == ["drop", "redirect", "redirect_x3", "redirect_cpu", "tx"]
    got = rows(report)
    assert set(got) == FRAMES
    for r in got.values():
        for name in ("no_rules", *report["actions"]):
            assert r[f"{name}_ns"] > 0 and r[f"{name}_ratio"] > 0, name
        for name in report["actions"][1:]:
            assert r[f"{name}_vs_drop"] == pytest.approx(r[f"{name}_ns"] / r["drop_ns"], rel=0.01), name


def test_bench_of_an_interface_that_redirects(klab):
    """The twin of a program with redirect rules gets a devmap and a cpumap
    of its own (the live ones are left alone)."""
    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "redirect", "--cpu", "0", "--proto", "udp")
    report = klab.xdpctl.json("bench", klab.iface, "--rounds", "2", "--repeat", "20000")
    assert set(rows(report)) == FRAMES and report["program"]["source"].endswith(", 1 rules)")
    assert sum(v["packets"] for per in klab.counters().values() for v in per.values()) == 0


def test_bench_established_times_the_lookup_against_the_same_rule_without_it(xdpctl_root):
    report = xdpctl_root.json("bench", "--established", "--rounds", "1", "--repeat", "20000")
    assert report["program"]["options"] == ["policy deny"]
    assert report["baseline"] == "the empty XDP program (return XDP_PASS)"
    got = rows(report)
    assert set(got) == FRAMES
    for r in got.values():
        assert r["empty_ns"] > 0 and r["rules_ns"] > 0 and r["established_ns"] > 0
        # one round: the ratio reported is exactly the ratio of the times
        assert r["established_over_rules"] == pytest.approx(r["established_ns"] / r["rules_ns"], rel=0.01)


def test_bench_egress_times_the_tc_program_against_the_empty_tc_program(xdpctl_root):
    report = xdpctl_root.json("bench", "--egress", "--rounds", "1", "--repeat", "20000")
    assert report["baseline"] == "the empty TC program (return TC_ACT_UNSPEC)"
    got = rows(report)
    assert set(got) == FRAMES
    for r in got.values():
        assert r["empty_ns"] > 0 and r["egress_ns"] > 0
        assert r["egress_ratio"] == pytest.approx(r["egress_ns"] / r["empty_ns"], rel=0.01)


def test_bench_established_refuses_an_interface(xdpctl_root):
    result = xdpctl_root("bench", "lo", "--established", check=False)
    assert result.returncode == 2 and result.stderr.startswith("xdpctl: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
