"""Rules that steer, on veth labs (issue 15): redirect out of other
interfaces (one, and three by flow hash), redirect to another CPU, tx back
to the sender, a target deleted under a rule, the totals of every verdict,
changes that only write the devmap, apply/export with targets, and bad
input that changes nothing.

The labs of one test share one host namespace (the source lab's, isolated):
xdpctl attaches to the source lab's host end, and its targets are the host
ends of the other labs. A veth takes redirected frames only when its peer
receives in NAPI mode (an XDP program there; docs/rules.md), so each target
lab's peer, and for tx the source lab's own, carries the empty XDP program,
which passes everything; a packet socket on the peer then sees what arrived.
Frames are compared byte for byte with those sent, so nothing else that may
arrive (the host's own replies) is counted.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

import xdpctl.traffic.frames  # noqa: F401 - scapy, without this machine's interfaces
from conftest import Xdpctl, netns_ino, remove_state_of
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from xdpctl.datapath import classify, contract, flow_hash
from xdpctl.kernel import libbpf, netlink
from xdpctl.kernel.netlink import socket_in
from xdpctl.traffic import lab as labs
from xdpctl.traffic.sender import Sender

pytestmark = pytest.mark.kernel

ETH_P_ALL = 0x0003
SO_RCVBUFFORCE = 33  # asm-generic/socket.h (root may pass net.core.rmem_max)
RATE = 2000  # frames/s: below what a veth's 256-frame XDP ring holds between two NAPI polls
VERDICTS = contract.VERDICTS


# --- labs that share a host namespace ----------------------------------------------------


def _free_index() -> int:
    used = {lab.index for lab in labs.labs()}
    return next(i for i in range(1, labs.MAX_LABS) if i not in used)


def _join(name: str, host_netns: str) -> labs.Lab:
    """A lab whose host end is made in another lab's host namespace."""
    lab = labs.Lab(name, _free_index(), host_netns)
    netlink.netns_create(lab.netns)
    for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
        netlink.write_sysctl_in(lab.netns, key, "1")
    with netlink.Netlink(namespace=host_netns) as host:
        host.veth_create(lab.host_if, lab.peer_if, peer_netns=lab.netns)
    labs.configure(lab)
    return lab


def _empty_xdp_on_peer(lab: labs.Lab) -> None:
    """Put the empty XDP program (XDP_PASS) on a lab's peer, so that its veth
    takes redirected and sent-back frames; it goes with the namespace."""
    from xdpctl.datapath.program import empty_program
    from xdpctl.kernel.compiler import compile_and_load

    loaded = compile_and_load(empty_program())
    try:
        with netlink.Netlink(namespace=lab.netns) as nl:
            nl.xdp_set(nl.link(lab.peer_if), loaded.prog_fd, "native", noexist=True)
    finally:
        loaded.close()


@dataclass
class Steering:
    """labs[0]: where xdpctl filters; labs[1:]: its targets."""

    labs: list[labs.Lab]
    xdpctl: Xdpctl
    made: list = field(default_factory=list)

    @property
    def src(self) -> labs.Lab:
        return self.labs[0]

    @property
    def iface(self) -> str:
        return self.src.host_if

    def targets(self) -> list[labs.Lab]:
        return self.labs[1:]

    def stats(self) -> dict:
        (entry,) = self.xdpctl.json("stats", self.iface)["interfaces"]
        return entry

    def send(self, frames: list[bytes], rate: float = RATE) -> None:
        with Sender(self.src.peer_if, self.src.netns) as s:
            s.send(frames, len(frames), rate=rate)

    def wait_for(self, packets: int, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            entry = self.stats()
            if sum(c["packets"] for c in entry["total"].values()) >= packets or time.monotonic() > deadline:
                time.sleep(0.2)  # and whatever should not be there
                return self.stats()
            time.sleep(0.05)


@pytest.fixture
def steering_labs():
    made: list[labs.Lab] = []
    inos: list[int] = []

    def make(n: int, xdp_on_peers: bool = True) -> Steering:
        first = labs.up("a" + secrets.token_hex(4), isolated=True)
        made.append(first)
        inos.append(netns_ino(first.host_netns))
        for _ in range(n - 1):
            lab = _join("b" + secrets.token_hex(4), first.host_netns)
            made.append(lab)
            if xdp_on_peers:
                _empty_xdp_on_peer(lab)
        return Steering(made[-n:], Xdpctl(first.host_netns))

    try:
        yield make
    finally:
        for lab in reversed(made):
            labs.down(lab)
        for ino in inos:
            remove_state_of(ino)


# --- capturing on a peer ----------------------------------------------------------------


class Capture:
    """Frames arriving on a lab's peer (a packet socket in its namespace)."""

    def __init__(self, lab: labs.Lab):
        self.sock = socket_in(lab.netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        self.sock.bind((lab.peer_if, 0))
        self.sock.setblocking(False)

    def read(self, quiet: float = 0.5, limit: float = 10.0) -> list[bytes]:
        """What arrived (not what the peer sent), until nothing has for `quiet` s."""
        out, last, start = [], time.monotonic(), time.monotonic()
        while time.monotonic() - last < quiet and time.monotonic() - start < limit:
            try:
                data, addr = self.sock.recvfrom(65536)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if addr[2] != socket.PACKET_OUTGOING:
                out.append(data)
                last = time.monotonic()
        return out

    def close(self) -> None:
        self.sock.close()


def udp4(src_lab: labs.Lab, dst: str, sport: int, dport: int, payload: bytes = b"steer", src: str | None = None) -> bytes:
    return bytes(Ether(src=src_lab.peer_mac, dst=src_lab.host_mac) / IP(src=src or src_lab.peer4, dst=dst)
                 / UDP(sport=sport, dport=dport) / payload)


def add(s: Steering, *args: str) -> dict:
    return json.loads(s.xdpctl("rule", "add", s.iface, *args, "--json").stdout)


def sums_to_what_was_sent(entry: dict, frames: list[bytes]) -> None:
    """Every frame counted under exactly one verdict: per class, the five
    verdicts add up to what was sent, packets and bytes."""
    sent = Counter()
    for f in frames:
        sent[(classify.classify(f), "packets")] += 1
        sent[(classify.classify(f), "bytes")] += len(f)
    for cls in contract.CLASSES:
        per = entry["counters"][cls]
        assert list(per) == list(VERDICTS)
        for unit in ("packets", "bytes"):
            assert sum(per[v][unit] for v in VERDICTS) == sent[(cls, unit)], (cls, unit)


# --- redirect --to -------------------------------------------------------------------------


def test_redirect_to_one_target_delivers_what_it_matches_and_nothing_else(steering_labs):
    s = steering_labs(2)
    target = s.targets()[0]
    s.xdpctl("attach", s.iface)
    out = add(s, "redirect", "--to", target.host_if, "--dst", "198.51.100.0/24")
    assert out["rule"]["to"] == [target.host_if] and out["recompiled"] is True
    matched = [udp4(s.src, f"198.51.100.{i}", 40000 + i, 9) for i in range(1, 51)]
    unmatched = [udp4(s.src, "203.0.113.7", 40000 + i, 9) for i in range(30)]
    cap = Capture(target)
    try:
        s.send(matched + unmatched)
        got = cap.read()
    finally:
        cap.close()
    assert Counter(f for f in got if f in matched + unmatched) == Counter(matched)  # each once, none other
    entry = s.wait_for(len(matched) + len(unmatched))
    assert entry["counters"]["ipv4/udp"]["redirect"] == {"packets": 50, "bytes": sum(map(len, matched))}
    assert entry["counters"]["ipv4/udp"]["pass"] == {"packets": 30, "bytes": sum(map(len, unmatched))}
    assert entry["rules"][0]["hits"]["packets"] == 50
    sums_to_what_was_sent(entry, matched + unmatched)


@pytest.mark.matrix
def test_redirect_to_three_targets_spreads_flows_each_on_one_target(steering_labs):
    """300 UDP flows of 3 frames each over three targets: every flow's frames
    all arrive, at one target only, the one the flow hash names; each target
    gets a third of the flows, within 8 percentage points (3 standard
    deviations of a fair split of 300)."""
    s = steering_labs(4)
    names = [lab.host_if for lab in s.targets()]
    s.xdpctl("attach", s.iface)
    add(s, "redirect", "--to", ",".join(names), "--proto", "udp")
    flows = [(f"10.{i // 250}.{i % 250}.{7 + i % 3}", 20000 + 17 * i) for i in range(300)]
    frames = [udp4(s.src, s.src.host4, sport, 53, payload=bytes([n]) * (10 + n), src=src)
              for n in range(3) for src, sport in flows]
    caps = [Capture(lab) for lab in s.targets()]
    try:
        s.send(frames)
        arrived = [cap.read() for cap in caps]
    finally:
        for cap in caps:
            cap.close()
    where: dict[tuple, set[int]] = {}
    for t, got in enumerate(arrived):
        for f in got:
            if f in frames:
                ip = IP(f[14:])
                where.setdefault((ip.src, ip[UDP].sport), set()).add(t)
    assert sum(len([f for f in got if f in frames]) for got in arrived) == len(frames)  # all arrived, once
    assert len(where) == len(flows) and all(len(ts) == 1 for ts in where.values())  # one target per flow
    for (src, sport), ts in where.items():  # the one the hash names
        assert ts == {flow_hash.pick(udp4(s.src, s.src.host4, sport, 53, src=src), 3)}, (src, sport)
    per_target = Counter(next(iter(ts)) for ts in where.values())
    assert all(abs(per_target[t] / len(flows) - 1 / 3) <= 0.08 for t in range(3)), per_target
    entry = s.wait_for(len(frames))
    assert entry["total"]["redirect"]["packets"] == len(frames)
    sums_to_what_was_sent(entry, frames)


def test_a_new_target_list_is_written_to_the_devmap_without_a_reload(steering_labs):
    s = steering_labs(3)
    b, c = s.targets()
    s.xdpctl("attach", s.iface)
    first = add(s, "redirect", "--to", b.host_if, "--dport", "1000")
    assert first["recompiled"] is True
    second = add(s, "redirect", "--to", c.host_if, "--dport", "2000")
    assert second["recompiled"] is False and second["prog_id"] == first["prog_id"]  # maps only
    to_b, to_c = udp4(s.src, s.src.host4, 1, 1000), udp4(s.src, s.src.host4, 1, 2000)
    caps = [Capture(b), Capture(c)]
    try:
        s.send([to_b] * 5 + [to_c] * 7)
        got_b, got_c = (cap.read() for cap in caps)
    finally:
        for cap in caps:
            cap.close()
    assert got_b.count(to_b) == 5 and to_c not in got_b
    assert got_c.count(to_c) == 7 and to_b not in got_c


# --- redirect --cpu ----------------------------------------------------------------------


def _cpumap_threads(map_id: int) -> dict[int, int]:
    """The kernel threads of a cpumap: CPU -> the CPU the thread last ran on
    (/proc/PID/stat, field 39), from their names, cpumap/<cpu>/map:<id>."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            if not comm.startswith("cpumap/") or not comm.endswith(f"/map:{map_id}"):
                continue
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(comm.split("/")[1])] = int(fields[36])  # field 39 of the whole line
    return out


def _cpumap_threads_settled(map_id: int, want: set[int], timeout: float = 5.0) -> dict[int, int]:
    """The threads once exactly want's are there: the kernel stops the thread
    of a removed entry a moment later (after an RCU grace period)."""
    deadline = time.monotonic() + timeout
    while True:
        threads = _cpumap_threads(map_id)
        if set(threads) == want or time.monotonic() > deadline:
            return threads
        time.sleep(0.05)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to move frames between")
def test_redirect_cpu_delivers_to_a_socket_on_that_cpu(steering_labs):
    """Frames a --cpu rule decides reach a UDP socket in the host end's
    namespace, received by the stack on that CPU: the socket's
    SO_INCOMING_CPU says which, and the cpumap's kernel thread for that CPU
    (cpumap/<cpu>/map:<id>) exists while the rule does, and ran there."""
    s = steering_labs(1)
    s.xdpctl("attach", s.iface)
    sock = socket_in(s.src.host_netns, socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((s.src.host4, 0))
    sock.connect((s.src.peer4, 5000))  # a connected UDP socket records the CPU its frames came in on
    sock.settimeout(3)
    port = sock.getsockname()[1]
    pin = f"/sys/fs/bpf/xdpctl/ns{netns_ino(s.src.host_netns)}"
    try:
        for cpu in (1, 0):
            rule = add(s, "redirect", "--cpu", str(cpu), "--proto", "udp", "--dport", str(port))["rule"]
            assert rule["cpu"] == cpu and rule["queue"] == contract.QUEUE_DEFAULT
            s.send([udp4(s.src, s.src.host4, 5000, port, payload=b"cpu%d" % i) for i in range(20)])
            got = sorted(sock.recvfrom(2048)[0] for _ in range(20))
            assert got == sorted(b"cpu%d" % i for i in range(20))
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_INCOMING_CPU) == cpu
            (att,) = os.listdir(pin)
            with libbpf.opened(f"{pin}/{att}/{contract.PIN_CPUMAP}") as fd:
                map_id = libbpf.map_info(fd).id
            threads = _cpumap_threads_settled(map_id, {cpu})
            assert list(threads) == [cpu] and threads[cpu] == cpu  # only this CPU's queue, running there
            s.xdpctl("rule", "del", s.iface, str(rule["id"]))
    finally:
        sock.close()
    entry = s.stats()
    assert entry["counters"]["ipv4/udp"]["redirect"]["packets"] == 40
    assert _cpumap_threads_settled(map_id, set()) == {}  # no rule: no queue, no thread


# --- tx ---------------------------------------------------------------------------------


def test_tx_sends_the_frame_back_with_the_macs_swapped(steering_labs):
    s = steering_labs(1)
    _empty_xdp_on_peer(s.src)  # the sender's veth end takes frames sent back by XDP
    s.xdpctl("attach", s.iface)
    add(s, "tx", "--proto", "udp", "--dport", "7")
    echo = [udp4(s.src, s.src.host4, 3000 + i, 7, payload=b"echo%d" % i) for i in range(25)]
    other = [udp4(s.src, s.src.host4, 3000, 9)]
    cap = Capture(s.src)
    try:
        s.send(echo + other)
        got = cap.read()
    finally:
        cap.close()
    swapped = [f[6:12] + f[0:6] + f[12:] for f in echo]
    assert Counter(f for f in got if f in swapped) == Counter(swapped)
    assert not any(f[6:12] + f[0:6] + f[12:] in got for f in other)
    entry = s.wait_for(len(echo) + len(other))
    assert entry["counters"]["ipv4/udp"]["tx"] == {"packets": 25, "bytes": sum(map(len, echo))}
    sums_to_what_was_sent(entry, echo + other)


# --- a target that goes away ---------------------------------------------------------------


def test_a_deleted_target_is_counted_as_aborted_and_status_names_the_rule(steering_labs):
    s = steering_labs(2)
    target = s.targets()[0]
    s.xdpctl("attach", s.iface)
    rule = add(s, "redirect", "--to", target.host_if, "--proto", "udp")["rule"]
    with netlink.Netlink(namespace=s.src.host_netns) as nl:
        ifindex = nl.link(target.host_if).ifindex
        assert nl.link_delete(target.host_if)
    frames = [udp4(s.src, s.src.host4, 6000 + i, 9) for i in range(40)]
    s.send(frames)
    entry = s.wait_for(len(frames))
    assert entry["counters"]["ipv4/udp"]["aborted"] == {"packets": 40, "bytes": sum(map(len, frames))}
    assert entry["total"]["redirect"]["packets"] == 0
    sums_to_what_was_sent(entry, frames)
    (st,) = s.xdpctl.json("status")["interfaces"]
    (warning,) = st["warnings"]
    assert warning["rule"] == rule["id"] and warning["target"] == target.host_if
    assert warning["ifindex"] == ifindex and warning["problem"] == "gone"
    assert "counted as aborted" in warning["message"]
    human = s.xdpctl("status")
    assert f"warning: {s.iface}: rule {rule['id']} redirects to {target.host_if}" in human.stderr
    doctor = s.xdpctl("doctor", check=False).stdout
    assert "redirect targets" in doctor and target.host_if in doctor
    # Rules still change (the dead target stays out of the devmap), and rule list names it.
    add(s, "drop", "--proto", "icmp")
    listed = s.xdpctl.json("rule", "list", s.iface)["rules"]
    assert [r.get("to") for r in listed] == [[target.host_if], None]
    s.send(frames)
    assert s.wait_for(2 * len(frames))["counters"]["ipv4/udp"]["aborted"]["packets"] == 80


# --- every verdict at once ---------------------------------------------------------------------


def test_the_five_verdicts_sum_to_the_frames_sent(steering_labs):
    from xdpctl.traffic import frames as profiles
    from xdpctl.traffic.predict import predict, rules_from_json
    from xdpctl.datapath.program import FilterOptions

    s = steering_labs(2, xdp_on_peers=True)
    _empty_xdp_on_peer(s.src)
    target = s.targets()[0]
    s.xdpctl("attach", s.iface)
    add(s, "redirect", "--to", target.host_if, "--proto", "udp", "--dport", "9")
    add(s, "redirect", "--cpu", "0", "--proto", "tcp")
    add(s, "tx", "--proto", "icmp")
    add(s, "drop", "--ethertype", "arp")
    mix = profiles.build("mix", s.src.endpoints()) + [udp4(s.src, s.src.host4, 1, 9)] * 10
    s.send(mix)
    entry = s.wait_for(len(mix))
    want, hits = predict(mix, [1] * len(mix), rules_from_json(entry["rules"]), FilterOptions())
    assert entry["counters"] == want
    assert {r["id"]: r["hits"] for r in entry["rules"]} == hits
    assert all(entry["total"][v]["packets"] for v in ("pass", "drop", "redirect", "tx"))
    assert entry["total"]["aborted"]["packets"] == 0
    sums_to_what_was_sent(entry, mix)


# --- the file ---------------------------------------------------------------------------------


def test_apply_export_and_dry_run_carry_the_targets(steering_labs, tmp_path):
    s = steering_labs(3)
    _empty_xdp_on_peer(s.src)  # for the tx rule
    b, c = s.targets()
    cpu = max(os.sched_getaffinity(0))
    path = tmp_path / "xdpctl.toml"
    path.write_text(f"""
[interfaces.{s.iface}]
rules = [
  {{ action = "redirect", to = ["{b.host_if}", "{c.host_if}"], proto = "udp" }},
  {{ action = "redirect", cpu = {cpu}, queue = 512, proto = "tcp", dport = 443 }},
  {{ action = "tx", proto = "icmp" }},
]
""")
    os.chmod(path, 0o600)
    dry = s.xdpctl("apply", str(path), "--dry-run").stdout
    assert f"+ redirect to {b.host_if},{c.host_if} proto udp" in dry and f"+ redirect cpu {cpu} queue 512" in dry
    assert s.xdpctl.json("status") == {"interfaces": []}  # a dry run changes nothing
    s.xdpctl("apply", str(path))
    exported = s.xdpctl("export", s.iface).stdout
    assert f'to = ["{b.host_if}", "{c.host_if}"]' in exported and f"cpu = {cpu}, queue = 512" in exported
    again = tmp_path / "again.toml"
    again.write_text(exported)
    os.chmod(again, 0o600)
    assert s.xdpctl("apply", str(again)).stdout.startswith("nothing to change")
    listed = s.xdpctl.json("rule", "list", s.iface)["rules"]
    assert [(r["action"], r.get("to"), r.get("cpu")) for r in listed] == [
        ("redirect", [b.host_if, c.host_if], None), ("redirect", None, cpu), ("tx", None, None)]


# --- bad input -----------------------------------------------------------------------------------


def one_line(proc, *fragments) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdpctl: error: "), proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def test_bad_targets_and_cpus_are_one_line_and_change_nothing(steering_labs):
    s = steering_labs(3)
    ready, bare = s.targets()
    # bare's peer gets no XDP program: a veth that drops what is redirected into it.
    with netlink.Netlink(namespace=bare.netns) as nl:
        nl.xdp_set(nl.link(bare.peer_if), -1, "native")
    s.xdpctl("attach", s.iface)
    add(s, "drop", "--proto", "udp")  # the program has a rule engine: a redirect would grow it
    with netlink.Netlink(namespace=s.src.host_netns) as nl:
        nl.veth_create("xdown" + secrets.token_hex(2), "xdpeer" + secrets.token_hex(2))
        down = [l.ifname for l in nl.links() if l.ifname.startswith("xdown")][0]
    other_ns_name = s.src.peer_if  # exists, but in the source lab's peer namespace only
    cpus = sorted(os.sched_getaffinity(0))
    cases = [
        (["--to", "nosuch0"], ("--to nosuch0: no interface of that name", "same namespace")),
        (["--to", other_ns_name], (f"--to {other_ns_name}: no interface of that name",)),
        (["--to", s.iface], (f"--to {s.iface} is {s.iface} itself", "use the tx action")),
        (["--to", down], (f"{down} is down",)),
        (["--to", bare.host_if], (f"{bare.host_if} is a veth whose peer ({bare.peer_if}) runs no XDP program",)),
        (["--to", f"{ready.host_if},nosuch0"], ("--to nosuch0",)),
        (["--cpu", "4095"], ("--cpu 4095: this machine has no CPU 4095",)),
        (["--to", ready.host_if, "--cpu", str(cpus[0])], ("--to and --cpu cannot be given together",)),
    ]
    before = snapshot_of(s)
    for args, fragments in cases:
        one_line(s.xdpctl("rule", "add", s.iface, "redirect", *args, check=False), *fragments)
        assert snapshot_of(s) == before, args
    one_line(s.xdpctl("rule", "add", s.iface, "pass", "--to", ready.host_if, check=False), "--to is for redirect")
    assert snapshot_of(s) == before
    assert [r["action"] for r in s.xdpctl.json("rule", "list", s.iface)["rules"]] == ["drop"]


def snapshot_of(s: Steering) -> dict:
    """What a refused command must leave as it was: xdpctl's pins for this
    namespace (with the program and every map behind them: ids, and the
    entries of the devmap and cpumap), and the XDP state of its links.
    (conftest.snapshot compares every program and map of the machine, which
    other tests running at once change too; xdpctl pins nothing elsewhere,
    and what it loads and does not pin or attach goes with its process.)"""
    root = f"/sys/fs/bpf/xdpctl/ns{netns_ino(s.src.host_netns)}"
    pins = {}
    for d, dirs, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            with libbpf.opened(path) as fd:
                if f in (contract.PIN_DEVMAP, contract.PIN_CPUMAP):
                    info = libbpf.map_info(fd)
                    keys = [struct.pack("<I", k) for k in range(info.max_entries)]
                    pins[path] = (info.id, [libbpf.map_lookup(fd, k, 4) for k in keys])
                elif f.startswith(contract.PIN_PROG):
                    pins[path] = libbpf.prog_info(fd).id
                else:
                    pins[path] = libbpf.map_info(fd).id
    with netlink.Netlink(namespace=s.src.host_netns) as nl:
        links = {link.ifname: link.xdp for link in nl.links()}
    return {"pins": pins, "links": links}
