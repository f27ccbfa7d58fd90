"""attach --drop-non-ip and count-only on a veth lab: exact per-class pass and
drop packets and bytes for a mixed frame set, read by separate processes."""

from __future__ import annotations

import socket

import pytest

from conftest import expected
from xdpctl.datapath import contract
from xdpctl.traffic import frames
from xdpctl.kernel.netlink import socket_in

pytestmark = pytest.mark.kernel


@pytest.mark.matrix
def test_drop_non_ip_counts_every_class_exactly(klab):
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    mix = frames.build("mix", klab.lab.endpoints())
    sent = klab.send(mix, count=len(mix) * 50)
    got = klab.wait_for_total(len(mix) * 50)
    assert got == expected(sent, drop_non_ip=True)
    # Every class was exercised, and non-IP frames were really dropped.
    assert all(sent[(c, "packets")] > 0 for c in contract.CLASSES)
    assert got["arp"]["drop"]["packets"] == 50
    assert got["other"]["drop"]["packets"] == 100  # LLDP and 802.3


def test_without_options_everything_passes_and_is_counted(klab):
    klab.xdpctl("attach", klab.iface)
    mix = frames.build("mix", klab.lab.endpoints())
    sent = klab.send(mix, count=len(mix) * 3)
    assert klab.wait_for_total(len(mix) * 3) == expected(sent, drop_non_ip=False)


def test_passed_udp_reaches_a_socket_and_arp_does_not_get_through(klab):
    lab = klab.lab
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    sock = socket_in(lab.host_netns, socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((lab.host4, 0))
    sock.settimeout(3)
    ep = lab.endpoints(dport=sock.getsockname()[1])
    try:
        klab.send([frames.udp_frame(ep, b"through the filter")])
        data, addr = sock.recvfrom(2048)
        assert data == b"through the filter" and addr[0] == lab.peer4
    finally:
        sock.close()
    c = klab.wait_for_total(1)
    assert c["ipv4/udp"]["pass"]["packets"] == 1


def test_status_and_stats_json_schema(klab):
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    status = klab.xdpctl.json("status")
    (entry,) = status["interfaces"]
    assert entry["ifname"] == klab.iface and entry["managed"] is True
    assert entry["mode"] == "native" and entry["prog_name"] == contract.PROG_NAME
    assert entry["options"] == ["drop-non-ip"]
    stats = klab.xdpctl.json("stats")
    (s,) = stats["interfaces"]
    assert s["prog_id"] == entry["prog_id"] and s["ifindex"] == entry["ifindex"]
    assert list(s["counters"]) == list(contract.CLASSES)


@pytest.mark.matrix
def test_reattach_replaces_atomically_and_keeps_counters(klab):
    klab.xdpctl("attach", klab.iface)
    first = klab.xdpctl.json("status")["interfaces"][0]["prog_id"]
    mix = frames.build("mix", klab.lab.endpoints())
    klab.send(mix)
    before = klab.wait_for_total(len(mix))
    out = klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    assert "replaced xdpctl's program" in out.stdout
    (entry,) = klab.xdpctl.json("status")["interfaces"]
    assert entry["prog_id"] != first and entry["options"] == ["drop-non-ip"]
    assert klab.counters() == before
    klab.send(mix)
    after = klab.wait_for_total(2 * len(mix))
    assert after["arp"]["drop"]["packets"] == 1 and after["arp"]["pass"]["packets"] == 1


def test_stats_reset_zeroes(klab):
    klab.xdpctl("attach", klab.iface)
    klab.send(frames.build("mix", klab.lab.endpoints()))
    klab.wait_for_total(21)
    read = klab.xdpctl.json("stats", "--reset")["interfaces"][0]["counters"]
    assert read["ipv4/udp"]["pass"]["packets"] == 5
    assert all(v["packets"] == 0 for per in klab.counters().values() for v in per.values())


def test_generic_mode_counts_too(klab):
    klab.xdpctl("attach", klab.iface, "--mode", "generic", "--drop-non-ip")
    assert klab.xdpctl.json("status")["interfaces"][0]["mode"] == "generic"
    mix = frames.build("mix", klab.lab.endpoints())
    sent = klab.send(mix)
    assert klab.wait_for_total(len(mix)) == expected(sent, drop_non_ip=True)


def test_stats_reset_polled_under_traffic_loses_no_frame(klab):
    """Issue 12, defect 8: `stats --reset` polled while frames arrive: the
    polls sum exactly to what was sent, per class and verdict and per rule
    (a reset that reads, then zeroes, loses what was counted in between)."""
    import time

    from state_checks import Stream
    from xdpctl.datapath.program import FilterOptions
    from xdpctl.traffic.predict import predict, rules_from_json

    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp", "--dport", "53")
    klab.xdpctl("rule", "add", klab.iface, "pass", "--proto", "tcp")
    fs = frames.build("mix", klab.lab.endpoints()) + frames.build("mix", klab.lab.endpoints(dport=53))
    summed = {c: {v: {"packets": 0, "bytes": 0} for v in contract.VERDICTS} for c in contract.CLASSES}
    hits: dict[int, dict[str, int]] = {}
    rules = None

    def poll() -> None:
        nonlocal rules
        (entry,) = klab.xdpctl.json("stats", klab.iface, "--reset")["interfaces"]
        for c, per in entry["counters"].items():
            for v, n in per.items():
                summed[c][v]["packets"] += n["packets"]
                summed[c][v]["bytes"] += n["bytes"]
        for r in entry["rules"]:
            h = hits.setdefault(r["id"], {"packets": 0, "bytes": 0})
            h["packets"] += r["hits"]["packets"]
            h["bytes"] += r["hits"]["bytes"]
        rules = entry["rules"]

    poll()  # from zero
    summed = {c: {v: {"packets": 0, "bytes": 0} for v in contract.VERDICTS} for c in contract.CLASSES}
    hits.clear()
    polls = 0
    with Stream(klab, fs, rate=4000, max_seconds=20) as stream:
        deadline = time.monotonic() + 15
        while polls < 25 and time.monotonic() < deadline:
            poll()
            polls += 1
    assert stream.error is None, stream.error
    time.sleep(0.3)  # the last frames are counted in softirq, a moment after the send
    poll()
    sent = sum(stream.per_frame)
    assert sent > 5000 and polls >= 5, (sent, polls)
    want, want_hits = predict(fs, stream.per_frame, rules_from_json(rules), FilterOptions(drop_non_ip=True))
    assert summed == want
    assert hits == want_hits and all(h["packets"] for h in want_hits.values())
