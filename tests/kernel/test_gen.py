"""gen against a veth lab carrying xdpctl's program: what gen reports having
sent, per class, is exactly what `stats` counted (packets and bytes, pass or
drop), in the same class names and JSON shape; --src, --pcap, --rate and
--duration do what they say; bad input is one line, exit 2, and neither
sends a frame nor leaves anything behind; the progress bar appears on a
terminal only, never with --json.

gen runs as a separate process, like every xdpctl command here; frames go
from the lab's peer to its host end, both in namespaces the test made.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pty
import secrets
import socket
import subprocess
import sys
import threading
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import wrpcap, wrpcapng

from conftest import KernelLab, Xdpctl, netns_ino, remove_state_of, verdicts
from xdpctl.datapath import classify, contract, counters
from xdpctl.traffic import lab as labs
from xdpctl.kernel import netlink
from xdpctl.lifecycle.state import State

pytestmark = pytest.mark.kernel

ZERO = {"packets": 0, "bytes": 0}

# Packets per class in one pass over the mix profile's 21 distinct frames
# (xdpctl/traffic/frames.py): the GRE and SCTP frames are ipv4/other, the IPv4
# fragments and the option-carrying datagram ipv4/udp, LLDP and 802.3 STP
# other.
MIX = {"ipv4/tcp": 1, "ipv4/udp": 5, "ipv4/icmp": 1, "ipv4/other": 2, "ipv6/tcp": 3, "ipv6/udp": 3,
       "ipv6/icmpv6": 2, "ipv6/other": 1, "arp": 1, "other": 2}
# profile: (frames to send, packets gen must have sent per class, bytes per frame for single-frame floods)
PROFILES = {
    "mix": (2100, {c: 100 * n for c, n in MIX.items()}, None),
    "ip": (1800, {c: 100 * n for c, n in MIX.items() if c.startswith("ipv")}, None),
    "non-ip": (300, {"arp": 100, "other": 200}, None),
    "syn-flood": (1000, {"ipv4/tcp": 1000}, 54),  # Ethernet 14 + IPv4 20 + TCP 20
    "udp-flood": (1000, {"ipv4/udp": 1000}, 60),  # + UDP 8 + 18 bytes of payload
    "icmp-flood": (1000, {"ipv4/icmp": 1000}, 60),  # + ICMP echo 8 + 18 bytes of payload
}


def gen(klab: KernelLab, *args: str) -> dict:
    """`xdpctl gen --lab LAB ARGS --json` in a fresh process; its report."""
    r = klab.xdpctl("gen", "--lab", klab.lab.name, *args, "--json")
    assert r.stderr == "", r.stderr
    return json.loads(r.stdout)


def sent_packets(report: dict) -> dict:
    (entry,) = report["interfaces"]
    return {c: v["sent"]["packets"] for c, v in entry["counters"].items() if v["sent"]["packets"]}


def assert_stats_equal_gen(klab: KernelLab, report: dict, drop_non_ip: bool) -> dict:
    """stats --json, class by class, equals what gen reported: every frame
    gen sent counted once, under the verdict the program gives its class."""
    klab.wait_for_total(report["frames"])
    (entry,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    (sent,) = report["interfaces"]
    assert sent["ifname"] == entry["ifname"] == klab.iface
    assert list(sent["counters"]) == list(entry["counters"]) == list(contract.CLASSES)
    for cls in contract.CLASSES:
        verdict, other = ("drop", "pass") if drop_non_ip and not cls.startswith("ipv") else ("pass", "drop")
        assert set(sent["counters"][cls]) == {"sent"}
        assert entry["counters"][cls] == verdicts({verdict: sent["counters"][cls]["sent"], other: ZERO}), cls
    both = {k: entry["total"]["pass"][k] + entry["total"]["drop"][k] for k in ("packets", "bytes")}
    assert sent["total"] == {"sent": both}
    assert both["packets"] == report["frames"]
    return entry


@pytest.mark.parametrize("drop_non_ip", [False, True], ids=["count-only", "drop-non-ip"])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_gen_reports_exactly_what_stats_counts(klab, profile, drop_non_ip):
    klab.xdpctl("attach", klab.iface, *(["--drop-non-ip"] if drop_non_ip else []))
    count, packets, frame_bytes = PROFILES[profile]
    report = gen(klab, "--profile", profile, "--count", str(count))
    assert report["frames"] == count
    assert sent_packets(report) == packets
    entry = assert_stats_equal_gen(klab, report, drop_non_ip)
    if frame_bytes:
        ((cls, n),) = packets.items()
        assert entry["counters"][cls]["pass"]["bytes"] == n * frame_bytes


# --- --src --------------------------------------------------------------------

PACKET_OUTGOING = 4  # linux/if_packet.h
SO_RCVBUFFORCE = 33  # asm-generic/socket.h; Python's socket module lacks it


@contextlib.contextmanager
def capture(klab: KernelLab, ethertype: int, want: int, timeout: float = 10.0):
    """Capture at the host end from the start of the block; yields a function
    that collects up to `want` received frames of ethertype (bounded by
    timeout)."""
    sock = netlink.socket_in(klab.lab.host_netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        sock.bind((klab.iface, 0))

        def collect() -> list[bytes]:
            got = []
            deadline = time.monotonic() + timeout
            while len(got) < want and time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    frame, addr = sock.recvfrom(65535)
                except socket.timeout:
                    break
                if addr[2] != PACKET_OUTGOING and int.from_bytes(frame[12:14], "big") == ethertype:
                    got.append(frame)
            return got

        yield collect
    finally:
        sock.close()


def source_of(frame: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if frame[12:14] == b"\x08\x00":
        return ipaddress.IPv4Address(frame[26:30])
    return ipaddress.IPv6Address(frame[22:38])


def test_src_on_a_small_network_cycles_through_its_hosts(klab):
    klab.xdpctl("attach", klab.iface)
    net = ipaddress.ip_network("203.0.113.0/24")
    with capture(klab, 0x0800, 2 * 254) as collect:
        report = gen(klab, "--profile", "syn-flood", "--src", str(net), "--count", str(2 * 254))
        got = collect()
    assert report["distinct_frames"] == 254  # every host address, neither network nor broadcast
    assert sent_packets(report) == {"ipv4/tcp": 508}
    assert len(got) == 508
    seen = [source_of(f) for f in got]
    assert set(seen) == set(net.hosts()) and all(seen.count(a) == 2 for a in net.hosts())
    assert_stats_equal_gen(klab, report, drop_non_ip=False)


@pytest.mark.parametrize("profile,cidr,ethertype,cls", [
    ("udp-flood", "10.128.0.0/10", 0x0800, "ipv4/udp"),
    ("icmp-flood", "2001:db8:77::/48", 0x86DD, "ipv6/icmpv6"),
])
def test_src_spreads_random_sources_within_the_cidr(klab, profile, cidr, ethertype, cls):
    klab.xdpctl("attach", klab.iface)
    net = ipaddress.ip_network(cidr)
    with capture(klab, ethertype, 2048) as collect:
        report = gen(klab, "--profile", profile, "--src", cidr, "--count", "2048")
        got = collect()
    assert report["distinct_frames"] == 2048 and sent_packets(report) == {cls: 2048}
    assert len(got) == 2048
    sources = {source_of(f) for f in got}
    assert all(a in net and a != net.network_address for a in sources)
    assert len(sources) == 2048  # one distinct source per frame sent (past 1,024: written into one frame)
    assert_stats_equal_gen(klab, report, drop_non_ip=False)


# --- --pcap -------------------------------------------------------------------

def capture_frames(lab: labs.Lab) -> list:
    ep = lab.endpoints()
    eth = Ether(src=ep.src_mac, dst=ep.dst_mac)
    return [
        eth / IP(src=ep.src4, dst=ep.dst4) / UDP(sport=4000, dport=9) / Raw(b"replayed" * 4),
        Ether(src=ep.src_mac, dst=ep.dst_mac) / Dot1Q(vlan=7) / IP(src=ep.src4, dst=ep.dst4) / TCP(dport=80),
        Ether(src=ep.src_mac, dst=ep.dst_mac) / IPv6(src=ep.src6, dst=ep.dst6) / ICMPv6EchoRequest(),
        Ether(src=ep.src_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=ep.src_mac, psrc=ep.src4, pdst=ep.dst4),
        Ether(src=ep.src_mac, dst=ep.dst_mac, type=0x88B5) / Raw(b"local experimental ethertype"),
    ]


@pytest.mark.parametrize("writer", [wrpcap, wrpcapng], ids=["pcap", "pcapng"])
def test_pcap_replay_is_counted_exactly(klab, tmp_path, writer):
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    pkts = capture_frames(klab.lab)
    path = tmp_path / "replay.cap"
    writer(str(path), pkts)
    report = gen(klab, "--pcap", str(path), "--count", "50")
    assert report["frames"] == 50 and report["distinct_frames"] == 5
    # What the capture holds, round-robin ten times, independent of gen's report.
    classes = ["ipv4/udp", "ipv4/tcp", "ipv6/icmpv6", "arp", "other"]
    assert [classify.classify(bytes(p)) for p in pkts] == classes
    expected = {c: verdicts({}) for c in contract.CLASSES}
    for cls, p in zip(classes, pkts):
        verdict = "pass" if cls.startswith("ipv") else "drop"
        expected[cls] = verdicts({verdict: {"packets": 10, "bytes": 10 * len(bytes(p))}})
    entry = assert_stats_equal_gen(klab, report, drop_non_ip=True)
    assert entry["counters"] == expected


# --- --rate and --duration ----------------------------------------------------

def test_rate_paces_the_send(klab):
    klab.xdpctl("attach", klab.iface)
    start = time.monotonic()
    report = gen(klab, "--profile", "udp-flood", "--count", "500", "--rate", "1000")
    assert time.monotonic() - start >= 0.45
    assert report["frames"] == 500 and report["seconds"] >= 0.45  # 500 frames at 1000/s: 0.5 s
    assert_stats_equal_gen(klab, report, drop_non_ip=False)


def test_duration_bounds_a_paced_send(klab):
    klab.xdpctl("attach", klab.iface)
    report = gen(klab, "--profile", "udp-flood", "--duration", "0.5", "--rate", "200")
    assert report["seconds"] >= 0.5
    # Pacing keeps the count at most rate x duration, plus one chunk of 2 frames.
    assert 1 <= report["frames"] <= 102
    assert_stats_equal_gen(klab, report, drop_non_ip=False)


def test_duration_bounds_a_flood_and_count_stops_first(klab):
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    report = gen(klab, "--profile", "mix", "--duration", "0.3")
    assert report["seconds"] >= 0.3 and report["frames"] > 0
    assert_stats_equal_gen(klab, report, drop_non_ip=True)
    klab.xdpctl("stats", klab.iface, "--reset")
    report = gen(klab, "--profile", "mix", "--count", "5", "--duration", "60")
    assert report["frames"] == 5 and report["seconds"] < 60
    # The mix's first five frames: TCP, UDP, ICMP, GRE, UDP with IP options.
    assert sent_packets(report) == {"ipv4/tcp": 1, "ipv4/udp": 2, "ipv4/icmp": 1, "ipv4/other": 1}
    assert_stats_equal_gen(klab, report, drop_non_ip=True)


# --- sending from an interface in a namespace, without --lab -------------------

def test_gen_from_an_interface_in_a_namespace(klab):
    lab = klab.lab
    klab.xdpctl("attach", klab.iface)
    args = ["--iface", lab.peer_if, "--dst-mac", lab.host_mac, "--dst", lab.host4,
            "--profile", "udp-flood", "--count", "100", "--json"]
    # --netns of gen, and the root --netns, name the namespace alike.
    for runner, extra in ((klab.xdpctl, ["--netns", lab.netns]), (Xdpctl(lab.netns), [])):
        r = runner("gen", *extra, *args)
        report = json.loads(r.stdout)
        assert report["interfaces"][0]["ifname"] == f"{lab.peer_if} (peer)"
        assert sent_packets(report) == {"ipv4/udp": 100}
    klab.wait_for_total(200)
    (entry,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    assert entry["counters"]["ipv4/udp"] == verdicts({"pass": {"packets": 200, "bytes": 200 * 60}})
    assert entry["total"]["pass"]["packets"] == 200


# --- bad input ----------------------------------------------------------------

@pytest.fixture(scope="module")
def quiet_lab():
    """One lab for the bad-input cases, with the count-only program attached
    so that any frame a failing gen sent would show in its counters."""
    lab = labs.up("t" + secrets.token_hex(4), isolated=True)
    ino = netns_ino(lab.host_netns)
    try:
        klab = KernelLab(lab, Xdpctl(lab.host_netns))
        klab.xdpctl("attach", klab.iface)
        yield klab
    finally:
        labs.down(lab)
        remove_state_of(ino)


def footprint(klab: KernelLab) -> dict:
    """What a failed gen must not change: the lab's links and their XDP
    programs, xdpctl's state for the lab, its counters, and the namespaces
    that bear the lab's name or a name a case made up."""
    lab = klab.lab
    links = {}
    for ns in (lab.host_netns, lab.netns):
        with netlink.Netlink(namespace=ns) as nl:
            links[ns] = [(link.ifname, link.mtu, link.xdp) for link in nl.links()]
    with netlink.Netlink(namespace=lab.host_netns) as nl:
        ifindex = nl.link(klab.iface).ifindex
    att = State().attachment(netns_ino(lab.host_netns), ifindex)
    return {
        "links": links,
        "pins": att.pins(),
        "counters": counters.read(att.pin(contract.PIN_COUNTERS)),
        "netns": [n for n in netlink.netns_names() if lab.name in n or "nosuch" in n or n == "elsewhere"],
    }


BAD = [
    (["--profile", "flood"], "Invalid value for '--profile': 'flood' is not one of"),
    (["--lab", "nosuch"], "no lab named 'nosuch'"),
    (["--lab", "Bad_Name"], "lab name 'Bad_Name' must be"),
    (["{lab}", "--profile", "syn-flood", "--src", "203.0.113.7/24"],
     "--src 203.0.113.7/24 has host bits set; the network is 203.0.113.0/24"),
    (["{lab}", "--profile", "syn-flood", "--src", "2001:db8::1/64"], "has host bits set; the network is 2001:db8::/64"),
    (["{lab}", "--profile", "syn-flood", "--src", "203.0.113.0/33"], "--src '203.0.113.0/33' is not an IPv4 or IPv6"),
    (["{lab}", "--profile", "udp-flood", "--src", "2001:db8::/129"], "is not an IPv4 or IPv6"),
    (["{lab}", "--profile", "udp-flood", "--src", "example.com"], "is not an IPv4 or IPv6"),
    (["{lab}", "--profile", "mix", "--src", "203.0.113.0/24"], "--src spreads the sources of the flood profiles"),
    (["{lab}", "--count", "0"], "--count must be between 1 and 100,000,000; got 0"),
    (["{lab}", "--count", "-5"], "--count must be between 1 and 100,000,000; got -5"),
    (["{lab}", "--count", "many"], "Invalid value for '--count'"),
    (["{lab}", "--rate", "0"], "--rate must be a positive number"),
    (["{lab}", "--rate", "-100"], "--rate must be a positive number"),
    (["{lab}", "--rate", "inf"], "--rate must be a positive number"),
    (["{lab}", "--duration", "0"], "--duration must be more than 0"),
    (["{lab}", "--duration", "-1"], "--duration must be more than 0"),
    (["{lab}", "--pcap", "{tmp}/missing.pcap"], "no capture file"),
    (["{lab}", "--pcap", "{tmp}/text.pcap"], "cannot read"),
    (["{lab}", "--pcap", "{tmp}/empty.pcap"], "holds no frames"),
    (["{lab}", "--pcap", "{tmp}"], "is a directory, not a capture file"),
    (["{lab}", "--pcap", "{tmp}/one.pcap", "--vlan", "5"], "--pcap replays the frames as captured; drop --vlan"),
    (["{lab}", "--netns", "elsewhere"], "--lab already names where to send from"),
    (["{lab}", "--iface", "peer0"], "--lab already names where to send from"),
    (["{lab}", "--dst", "198.18.0.9"], "--lab already names the addresses"),
    (["{lab}", "--vlan", "1", "--vlan", "2", "--vlan", "3"], "at most two --vlan tags"),
    (["{lab}", "--vlan", "4096"], "VLAN id 4096 is out of range"),
    (["{lab}", "--profile", "udp-flood", "--size", "1515"],
     "a 1515-byte frame does not fit peer0 (MTU 1500 plus the Ethernet header)"),
    (["--netns", "nosuch-ns", "--iface", "eth0"], "no network namespace named 'nosuch-ns'"),
    (["--count", "10"], "say where to send from"),
]


@pytest.mark.parametrize("template,fragment", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(quiet_lab, tmp_path, template, fragment):
    (tmp_path / "text.pcap").write_text("not a capture\n")
    wrpcap(str(tmp_path / "empty.pcap"), [])
    wrpcap(str(tmp_path / "one.pcap"), capture_frames(quiet_lab.lab)[:1])
    args = []
    for a in template:
        args += ["--lab", quiet_lab.lab.name] if a == "{lab}" else [a.replace("{tmp}", str(tmp_path))]
    before = footprint(quiet_lab)
    r = subprocess.run([sys.executable, "-m", "xdpctl", "gen", *args], capture_output=True, text=True,
                       timeout=60, cwd="/")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdpctl: error: "), r.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    time.sleep(0.05)  # a frame sent by mistake would be counted by now
    after = footprint(quiet_lab)
    assert after == before
    assert all(v["packets"] == 0 for per in after["counters"].values() for v in per.values())


# --- the progress bar ---------------------------------------------------------

def run_gen(klab: KernelLab, args: list[str], terminal: bool) -> tuple[int, str, str]:
    """gen with stdout and stderr on pseudo-terminals of their own (as in an
    interactive shell), or on pipes (as in a script)."""
    cmd = [sys.executable, "-m", "xdpctl", "gen", "--lab", klab.lab.name, *args]
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    if not terminal:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd="/")
        return r.returncode, r.stdout, r.stderr
    (out_m, out_s), (err_m, err_s) = pty.openpty(), pty.openpty()
    chunks: dict[int, list[bytes]] = {out_m: [], err_m: []}

    def drain(fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not data:
                return
            chunks[fd].append(data)

    readers = [threading.Thread(target=drain, args=(fd,)) for fd in (out_m, err_m)]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out_s, stderr=err_s, env=env, cwd="/")
    finally:
        os.close(out_s)
        os.close(err_s)
    try:
        for t in readers:
            t.start()
        code = proc.wait(timeout=60)
        for t in readers:
            t.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(out_m)
        os.close(err_m)
    return code, b"".join(chunks[out_m]).decode(), b"".join(chunks[err_m]).decode()


PACED = ["--count", "600", "--rate", "1000"]  # 0.6 s: long enough for the bar to redraw


def test_progress_bar_shows_on_a_terminal(klab):
    code, out, err = run_gen(klab, PACED, terminal=True)
    assert code == 0, err
    assert "sending" in err and "/600" in err and "\x1b[" in err  # the bar, drawn with control sequences
    assert "600 frames (21 distinct)" in out


def test_no_progress_bar_on_a_terminal_with_json(klab):
    code, out, err = run_gen(klab, [*PACED, "--json"], terminal=True)
    assert code == 0, err
    assert err == ""
    assert "\x1b" not in out
    assert json.loads(out)["frames"] == 600  # stdout is the JSON document and nothing else


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_no_progress_and_no_control_characters_off_a_terminal(klab, as_json):
    code, out, err = run_gen(klab, [*PACED, *(["--json"] if as_json else [])], terminal=False)
    assert code == 0, err
    assert err == ""
    assert not any(c in out for c in "\x1b\r\b")
    if as_json:
        assert json.loads(out)["frames"] == 600
    else:
        assert "sent towards" in out and "600 frames (21 distinct)" in out
