"""Rules on a veth lab: frames each rule should and should not match, sent
from the peer; verdicts, deliveries, per-rule hits and per-protocol counters
asserted exactly against the reference (xdpctl.traffic.predict), as separate xdpctl
processes read them."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from xdpctl.traffic import frames
from xdpctl.kernel.netlink import socket_in
from xdpctl.traffic.predict import predict, rules_from_json
from xdpctl.datapath.program import FilterOptions
from xdpctl.traffic.sender import Sender

pytestmark = pytest.mark.kernel


def send(klab, fs: list[bytes], count: int | None = None) -> list[int]:
    with Sender(klab.lab.peer_if, klab.lab.netns) as s:
        return s.send(fs, count or len(fs)).per_frame


def check(klab, fs: list[bytes], per_frame: list[int], options: FilterOptions = FilterOptions()) -> dict:
    """Stats must be exactly what the reference predicts. Returns stats."""
    total = sum(per_frame)
    klab.wait_for_total(total)
    (entry,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    want_counters, want_hits = predict(fs, per_frame, rules_from_json(entry["rules"]), options)
    assert entry["counters"] == want_counters
    assert {r["id"]: r["hits"] for r in entry["rules"]} == want_hits
    return entry


def add(klab, *args) -> int:
    out = klab.xdpctl("rule", "add", klab.iface, *args, "--json")
    import json

    return json.loads(out.stdout)["rule"]["id"]


def prog_id(klab) -> int:
    return klab.xdpctl.json("status")["interfaces"][0]["prog_id"]


def ep(klab, **kw):
    return klab.lab.endpoints(**kw)


def test_the_issue_examples_decide_exactly(klab):
    klab.xdpctl("attach", klab.iface)
    lab = klab.lab
    add(klab, "drop", "--src", "198.18.0.0/15", "--proto", "udp", "--dport", "53")
    add(klab, "drop", "--src", "fd78:6470::/32", "--proto", "tcp", "--dport", "22-25")
    add(klab, "pass", "--src-mac", "02:00:00:00:00:01", "--priority", "10")
    add(klab, "drop", "--vlan", "100", "--proto", "icmp", "--icmp-type", "8")
    add(klab, "drop", "--proto", "tcp", "--tcp-flags", "syn,!ack", "--dst", lab.host4)
    add(klab, "drop", "--ethertype", "0x88cc")
    fs = frames.build("mix", ep(klab))
    fs += frames.build("mix", ep(klab, dport=53))
    fs += frames.build("mix", ep(klab, dport=23), vlans=(100,))
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Dot1Q, Ether

    fs.append(bytes(Ether(src="02:00:00:00:00:01", dst=lab.host_mac) / IP(src=lab.peer4, dst=lab.host4) / ICMP()))
    fs.append(bytes(Ether(src=lab.peer_mac, dst=lab.host_mac) / Dot1Q(vlan=100) / IP(src=lab.peer4, dst=lab.host4) / ICMP(type=8)))
    fs.append(bytes(Ether(src=lab.peer_mac, dst=lab.host_mac) / Dot1Q(vlan=101) / IP(src=lab.peer4, dst=lab.host4) / ICMP(type=8)))
    per_frame = send(klab, fs, len(fs) * 3)
    entry = check(klab, fs, per_frame)
    hits = {r["match"].get("ethertype"): r["hits"]["packets"] for r in entry["rules"]}
    assert hits["0x88cc"] == 9  # LLDP, three times in each of the three mixes
    assert all(r["hits"]["packets"] > 0 for r in entry["rules"])  # every rule decided something


def test_first_match_priority_and_insertion_order(klab):
    klab.xdpctl("attach", klab.iface)
    first = add(klab, "drop", "--proto", "udp")
    second = add(klab, "pass", "--proto", "udp", "--dport", "9")  # later: never decides
    urgent = add(klab, "pass", "--dport", "9", "--priority", "5")  # lower number: decides first
    fs = frames.build("udp-flood", ep(klab)) + frames.build("udp-flood", ep(klab, dport=10))
    entry = check(klab, fs, send(klab, fs))
    hits = {r["id"]: r["hits"]["packets"] for r in entry["rules"]}
    assert hits[urgent] == 1 and hits[first] == 1 and hits[second] == 0
    assert [r["id"] for r in entry["rules"]] == [urgent, first, second]


@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_policy_decides_what_no_rule_does(klab, policy):
    klab.xdpctl("attach", klab.iface, "--policy", policy)
    add(klab, "pass", "--proto", "tcp", "--dport", "80")
    add(klab, "drop", "--proto", "icmp")
    fs = frames.build("mix", ep(klab))
    entry = check(klab, fs, send(klab, fs, 4 * len(fs)), FilterOptions(policy_deny=policy == "deny"))
    c = entry["counters"]
    assert c["ipv4/tcp"]["pass"]["packets"] == 4  # port 80: the pass rule
    assert c["ipv4/icmp"]["drop"]["packets"] == 4
    other = "drop" if policy == "deny" else "pass"
    assert c["arp"][other]["packets"] == 4


def test_ranges_ipv6_prefixes_and_flags(klab):
    klab.xdpctl("attach", klab.iface)
    lab = klab.lab
    add(klab, "drop", "--proto", "tcp", "--dport", "20-25")
    add(klab, "drop", "--src", "fd78:6470::/32", "--proto", "udp")
    add(klab, "drop", "--proto", "tcp", "--tcp-flags", "syn,!ack", "--dport", "443")
    fs = []
    for port in (19, 20, 22, 25, 26, 443):
        fs += frames.build("syn-flood", ep(klab, dport=port))
    fs += frames.build("mix", ep(klab))
    from scapy.layers.inet import TCP, IP
    from scapy.layers.l2 import Ether

    fs.append(bytes(Ether(src=lab.peer_mac, dst=lab.host_mac) / IP(src=lab.peer4, dst=lab.host4) / TCP(dport=443, flags="SA")))
    entry = check(klab, fs, send(klab, fs))
    assert entry["counters"]["ipv6/udp"]["drop"]["packets"] == 3


def test_fragments_escape_port_rules(klab):
    klab.xdpctl("attach", klab.iface)
    rule = add(klab, "drop", "--proto", "udp", "--dport", "9")
    mix = frames.build("mix", ep(klab))
    first_fragment, later_fragment = mix[5], mix[6]
    fs = [first_fragment, later_fragment]
    entry = check(klab, fs, send(klab, fs, 10))
    assert entry["counters"]["ipv4/udp"] == {"pass": {"packets": 5, "bytes": 5 * len(later_fragment)},
                                             "drop": {"packets": 5, "bytes": 5 * len(first_fragment)}}
    assert {r["id"]: r["hits"]["packets"] for r in entry["rules"]} == {rule: 5}


def test_passed_frames_are_delivered_and_dropped_ones_are_not(klab):
    lab = klab.lab
    klab.xdpctl("attach", klab.iface)
    sock = socket_in(lab.host_netns, socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((lab.host4, 0))
    sock.settimeout(0.5)
    port = sock.getsockname()[1]
    try:
        add(klab, "drop", "--proto", "udp", "--dport", str(port), "--src", f"{lab.peer4}/32")
        send(klab, [frames.udp_frame(ep(klab, dport=port), b"dropped")])
        with pytest.raises(socket.timeout):
            sock.recvfrom(2048)
        klab.xdpctl("rule", "del", klab.iface, "1")
        send(klab, [frames.udp_frame(ep(klab, dport=port), b"through")])
        assert sock.recvfrom(2048)[0] == b"through"
    finally:
        sock.close()


class Stream:
    """Frames sent continuously from the peer (bounded in time), counted."""

    def __init__(self, klab, fs: list[bytes], rate: float = 20000, seconds: float = 8.0):
        self.klab, self.fs, self.rate, self.seconds = klab, fs, rate, seconds
        self.per_frame: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with Sender(self.klab.lab.peer_if, self.klab.lab.netns) as s:
            totals = [0] * len(self.fs)
            deadline = time.monotonic() + self.seconds
            while not self.stop.is_set() and time.monotonic() < deadline:
                r = s.send(self.fs, 200, rate=self.rate)
                totals = [a + b for a, b in zip(totals, r.per_frame)]
            self.per_frame = totals

    def __enter__(self):
        self.thread = threading.Thread(target=self.run)
        self.thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


def test_a_rule_of_a_kind_in_use_takes_effect_without_reload(klab):
    klab.xdpctl("attach", klab.iface)
    add(klab, "drop", "--proto", "udp", "--dport", "53")
    before = prog_id(klab)
    fs = frames.build("syn-flood", ep(klab, dport=80)) + frames.build("udp-flood", ep(klab, dport=53))
    with Stream(klab, fs) as stream:
        time.sleep(0.5)
        out = klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "tcp", "--dport", "80")
        assert "maps only" in out.stdout
        time.sleep(0.5)
    assert prog_id(klab) == before
    total = sum(stream.per_frame)
    klab.wait_for_total(total)
    (entry,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    c = entry["counters"]
    tcp, udp = stream.per_frame[0], stream.per_frame[1]
    assert c["ipv4/udp"] == {"pass": {"packets": 0, "bytes": 0}, "drop": {"packets": udp, "bytes": udp * len(fs[1])}}
    dropped_tcp = c["ipv4/tcp"]["drop"]["packets"]
    assert c["ipv4/tcp"]["pass"]["packets"] + dropped_tcp == tcp
    assert 0 < dropped_tcp < tcp  # it took effect mid-stream
    hits = {r["match"].get("dport"): r["hits"]["packets"] for r in entry["rules"]}
    assert hits == {53: udp, 80: dropped_tcp}


@pytest.mark.matrix
def test_a_new_kind_swaps_the_program_with_no_frame_lost_or_unfiltered(klab):
    klab.xdpctl("attach", klab.iface)
    add(klab, "drop", "--proto", "udp", "--dport", "53")
    before = prog_id(klab)
    fs = frames.build("syn-flood", ep(klab, dport=80)) + frames.build("udp-flood", ep(klab, dport=53))
    with Stream(klab, fs) as stream:
        time.sleep(0.3)
        out = klab.xdpctl("rule", "add", klab.iface, "drop", "--vlan", "999")  # a new kind: recompile
        assert "recompiled" in out.stdout
        time.sleep(0.3)
    assert prog_id(klab) != before
    tcp, udp = stream.per_frame
    klab.wait_for_total(tcp + udp)
    (entry,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    c = entry["counters"]
    # Every frame counted once, and no UDP/53 frame passed during the swap.
    assert c["ipv4/tcp"] == {"pass": {"packets": tcp, "bytes": tcp * len(fs[0])}, "drop": {"packets": 0, "bytes": 0}}
    assert c["ipv4/udp"] == {"pass": {"packets": 0, "bytes": 0}, "drop": {"packets": udp, "bytes": udp * len(fs[1])}}
    hits = {r["match"].get("dport", "vlan"): r["hits"]["packets"] for r in entry["rules"]}
    assert hits == {53: udp, "vlan": 0}


def test_rules_and_counters_survive_a_reattach_with_other_options(klab):
    klab.xdpctl("attach", klab.iface)
    rid = add(klab, "drop", "--proto", "udp", "--dport", "9")
    fs = frames.build("mix", ep(klab))
    per_frame = send(klab, fs)
    before = check(klab, fs, per_frame)
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    (entry,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    assert entry["counters"] == before["counters"] and entry["rules"] == before["rules"]
    assert entry["options"] == ["drop-non-ip"] and entry["rules"][0]["id"] == rid


def test_bad_rule_values_change_nothing(klab):
    from conftest import snapshot

    klab.xdpctl("attach", klab.iface)
    add(klab, "drop", "--proto", "udp")
    cases = [
        (["drop", "--src", "203.0.113.5/24"], "host bits"),
        (["drop", "--src", "10.0.0.0/33"], "not an IPv4"),
        (["drop", "--dport", "0"], "1 to 65535"),
        (["drop", "--dport", "65536"], "1 to 65535"),
        (["drop", "--dport", "25-22"], "reversed"),
        (["drop", "--dport", "80abc"], "must be a port"),
        (["drop", "--proto", "udp", "--tcp-flags", "syn"], "--proto tcp"),
        (["drop", "--tcp-flags", "syn,!syn"], "both set and clear"),
        (["drop", "--src", "10.0.0.0/8", "--dst", "2001:db8::/32"], "different families"),
        (["drop", "--icmp-code", "3"], "--icmp-type"),
        (["drop", "--vlan", "4095"], "1 to 4094"),
        (["drop", "--ethertype", "0x05dc"], "802.3"),
        (["drop", "--src-mac", "02:00:00:00:00"], "MAC"),
        (["drop", "--priority", "-1"], "--priority"),
        (["block"], "pass"),
        (["drop", "--proto", "udp"], "already has this rule"),
    ]
    before = snapshot(klab)
    listing = klab.xdpctl("rule", "list", klab.iface, "--json").stdout
    for args, why in cases:
        r = klab.xdpctl("rule", "add", klab.iface, *args, check=False)
        assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    r = klab.xdpctl("rule", "del", klab.iface, "99", check=False)
    assert r.returncode == 2 and "no rule 99" in r.stderr
    assert snapshot(klab) == before
    assert klab.xdpctl("rule", "list", klab.iface, "--json").stdout == listing
