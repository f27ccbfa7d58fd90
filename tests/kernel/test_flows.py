"""--established on a live lab: `--policy deny` with `pass --established`
keeps the host's own connections working, with real sockets in the lab's
two namespaces (the host end carries xdpctl's programs; servers listen in the
peer's namespace, or the host's), and nothing else gets in.

What tc (iproute2) shows is the oracle for what is on the TC hook; what the
sockets receive, and xdpctl's exact counters, for what passed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from flowbed import (
    IcmpWatch,
    Server,
    foreign_tc_filter,
    ping,
    quoted,
    tc_filters,
    tc_qdiscs,
    tcp_exchange,
    udp_exchange,
)
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from state_checks import check_consistent, local_snapshot, one_line_error
from xdpctl.kernel.netlink import socket_in, write_sysctl_in

pytestmark = pytest.mark.kernel


def deny_with_established(klab, *more: str) -> None:
    klab.xdpctl("attach", klab.iface, "--policy", "deny", *more)
    klab.xdpctl("rule", "add", klab.iface, "pass", "--established")


def table(klab) -> dict:
    (entry,) = klab.xdpctl.json("flows", klab.iface)["interfaces"]
    return entry


def drops(klab, cls: str) -> int:
    return klab.counters()[cls]["drop"]["packets"]


@pytest.mark.matrix
def test_the_hosts_own_connections_work_under_deny(klab):
    lab = klab.lab
    # Timeouts longer than the test: in an emulated VM (the kernel matrix) the
    # `flows` process below starts tens of seconds after the closed TCP flow's
    # 10 s have begun.
    deny_with_established(klab, "--flow-timeouts", "tcp=3600,udp=3600,icmp=3600,closing=3600")
    tcp = Server(lab.netns, socket.AF_INET, lab.peer4, 8080)
    udp = Server(lab.netns, socket.AF_INET, lab.peer4, 5300, socket.SOCK_DGRAM)
    try:
        # TCP: the handshake, and data both ways.
        assert tcp_exchange(lab.host_netns, socket.AF_INET, lab.peer4, 8080, b"hello") == b"pong:hello"
        # UDP: a query gets its answer.
        assert udp_exchange(lab.host_netns, lab.peer4, 5300, b"query") == b"answer:query"
        # ICMP: a ping gets its reply.
        assert ping(lab.host_netns, lab.peer4, ident=4242)
    finally:
        tcp.close()
        udp.close()
    assert not tcp.errors and not udp.errors
    flows = {(f["proto"], f["remote_port"], f["icmp_id"]) for f in table(klab)["flows"]}
    assert {("tcp", 8080, None), ("udp", 5300, None), ("icmp", None, 4242)} <= flows
    # Nothing of it was dropped, and all that passed, passed by the rule.
    counters = klab.counters()
    assert sum(counters[c]["drop"]["packets"] for c in counters) == 0
    (rule,) = klab.xdpctl.json("rule", "list", klab.iface)["rules"]
    passed = sum(counters[c]["pass"]["packets"] for c in counters)
    assert rule["match"] == {"established": True} and rule["hits"]["packets"] == passed > 0
    check_consistent(klab)


def test_a_fragmentation_needed_error_quoting_a_tracked_flow_arrives(klab):
    """Path MTU discovery under --policy deny: the ICMP error about a flow the
    host opened reaches the host; one about a flow it never opened does not."""
    lab = klab.lab
    deny_with_established(klab)
    with socket_in(lab.host_netns, socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((lab.host4, 0))
        port = s.getsockname()[1]
        assert udp_exchange(lab.host_netns, lab.peer4, 9, b"x", timeout=0.3, sock=s) is None  # no server: no answer
    sent = IP(src=lab.host4, dst=lab.peer4, id=1) / UDP(sport=port, dport=9) / Raw(b"x")
    other = IP(src=lab.host4, dst=lab.peer4, id=1) / UDP(sport=port + 1, dport=9) / Raw(b"x")

    def error(what) -> bytes:
        return bytes(Ether(src=lab.peer_mac, dst=lab.host_mac) / IP(src=lab.peer4, dst=lab.host4) /
                     ICMP(type=3, code=4, nexthopmtu=1280) / Raw(quoted(what)))

    watch = IcmpWatch(lab.host_netns)
    try:
        watch.seen(3, 4, within=0.3)  # the port unreachable the peer sent for the datagram, and any other
        klab.send([error(sent), error(other)])
        arrived = watch.seen(3, 4, within=1.0)
    finally:
        watch.close()
    assert len(arrived) == 1
    ihl = (arrived[0][0] & 0x0F) * 4
    assert arrived[0][ihl + 8:] == quoted(sent)  # the one quoting the flow the host opened
    assert drops(klab, "ipv4/icmp") == 1


def test_what_the_peer_opens_is_dropped_unless_a_rule_lets_it_in(klab):
    lab = klab.lab
    deny_with_established(klab)
    server = Server(lab.host_netns, socket.AF_INET, lab.host4, 2222)
    try:
        with pytest.raises((socket.timeout, TimeoutError)):
            tcp_exchange(lab.netns, socket.AF_INET, lab.host4, 2222, timeout=1.5)
        assert server.accepted == 0
        dropped = drops(klab, "ipv4/tcp")
        assert dropped >= 1 and klab.counters()["ipv4/tcp"]["pass"]["packets"] == 0
        klab.xdpctl("rule", "add", klab.iface, "pass", "--proto", "tcp", "--dport", "2222")
        assert tcp_exchange(lab.netns, socket.AF_INET, lab.host4, 2222, b"ssh") == b"pong:ssh"
        assert server.accepted == 1
        assert drops(klab, "ipv4/tcp") == dropped  # nothing more dropped
    finally:
        server.close()
    # The host's replies on that connection were recorded as its flows too.
    assert any(f["host_port"] == 2222 for f in table(klab)["flows"])


def v6_exchange(lab) -> bytes:
    """tcp_exchange from the host to the peer over IPv6. In full runs it once
    failed with EADDRNOTAVAIL and once timed out: the lab's IPv6 addresses
    were made with IFA_F_PERMANENT where IFA_F_NODAD was meant, so the host's
    was tentative (duplicate address detection) for a second or two. A
    failure now shows the host's addresses as ip sees them."""
    try:
        return tcp_exchange(lab.host_netns, socket.AF_INET6, lab.peer6, 8443, b"v6")
    except OSError as exc:
        shown = subprocess.run(["ip", "-n", lab.host_netns, "-6", "addr", "show", "dev", lab.host_if],
                               capture_output=True, text=True).stdout
        raise AssertionError(f"{exc}; the host's IPv6 addresses: {shown}") from exc


def test_ipv6_tcp_under_deny(klab):
    lab = klab.lab
    # The lab's peer has no IPv6: give it some, without duplicate address detection.
    write_sysctl_in(lab.netns, "net.ipv6.conf.peer0.accept_dad", "0")
    for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.peer0.disable_ipv6"):
        write_sysctl_in(lab.netns, key, "0")
    from xdpctl.kernel import netlink

    with netlink.Netlink(namespace=lab.netns) as peer:
        peer.addr_add(lab.peer_if, f"{lab.peer6}/64")
        peer.neigh_add(lab.peer_if, lab.host6, lab.host_mac)
    shown = subprocess.run(["ip", "-n", lab.host_netns, "-6", "addr", "show", "dev", lab.host_if],
                           capture_output=True, text=True).stdout
    assert f"inet6 {lab.host6}/64 scope global nodad" in shown, shown  # usable at once: no DAD
    deny_with_established(klab)
    server = Server(lab.netns, socket.AF_INET6, lab.peer6, 8443)
    try:
        assert v6_exchange(lab) == b"pong:v6"
    finally:
        server.close()
    flows = [f for f in table(klab)["flows"] if f["family"] == "ipv6"]
    assert [(f["proto"], f["remote"], f["remote_port"]) for f in flows] == [("tcp", lab.peer6, 8443)]
    assert flows[0]["packets_back"] >= 3  # SYN-ACK, the data, the FIN


def test_a_flow_expires_after_its_timeout(klab):
    lab = klab.lab
    deny_with_established(klab, "--flow-timeouts", "udp=1")
    server = Server(lab.netns, socket.AF_INET, lab.peer4, 5301, socket.SOCK_DGRAM)
    try:
        with socket_in(lab.host_netns, socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((lab.host4, 0))
            assert udp_exchange(lab.host_netns, lab.peer4, 5301, b"q1", sock=s) == b"answer:q1"
            assert table(klab)["table"]["live"] == 1
            time.sleep(2.0)
            entry = table(klab)
            assert entry["flows"] == [] and entry["table"]["expired"] == 1
            # A late datagram from the peer on the expired flow is dropped.
            server.sock.sendto(b"late", s.getsockname())
            s.settimeout(0.5)
            with pytest.raises(socket.timeout):
                s.recvfrom(64)
    finally:
        server.close()
    assert drops(klab, "ipv4/udp") == 1


@pytest.mark.matrix
def test_detach_takes_xdpctls_tc_filter_and_leaves_a_foreign_one(klab):
    pins = f"/sys/fs/bpf/xdpctl-test-{os.getpid()}-{klab.lab.name}"
    os.mkdir(pins, 0o700)
    try:
        foreign_egress = foreign_tc_filter(klab, pins, "egress", prio=1)
        foreign_ingress = foreign_tc_filter(klab, pins, "ingress", prio=3)
        deny_with_established(klab)
        status = klab.xdpctl.json("status")["interfaces"][0]["egress"]
        assert status["attached"] and status["qdisc"] == "clsact, shared (not xdpctl's)"
        egress = {f["pref"]: f["options"]["prog"]["id"] for f in tc_filters(klab)}
        assert egress == {1: foreign_egress, status["tc_prio"]: status["prog_id"]} and status["tc_prio"] == 2
        klab.xdpctl("detach", klab.iface)
        assert [f["options"]["prog"]["id"] for f in tc_filters(klab)] == [foreign_egress]
        assert [f["options"]["prog"]["id"] for f in tc_filters(klab, "ingress")] == [foreign_ingress]
        assert "clsact" in tc_qdiscs(klab)
    finally:
        import shutil

        shutil.rmtree(pins, ignore_errors=True)


def test_the_last_established_rule_takes_the_egress_side_and_its_qdisc(klab):
    deny_with_established(klab)
    assert "clsact" in tc_qdiscs(klab) and len(tc_filters(klab)) == 1
    (rule,) = klab.xdpctl.json("rule", "list", klab.iface)["rules"]
    klab.xdpctl("rule", "del", klab.iface, str(rule["id"]))
    assert tc_filters(klab) == [] and "clsact" not in tc_qdiscs(klab)
    entry = table(klab)
    assert entry["table"] is None and entry["egress"] is None and entry["established_rules"] == 0
    info = check_consistent(klab)
    assert not {"flows", "egress", "egress_prog"} & set(info["pins"])
    # A qdisc xdpctl made stays when another tool's filter is in it.
    pins = f"/sys/fs/bpf/xdpctl-test-{os.getpid()}-{klab.lab.name}"
    os.mkdir(pins, 0o700)
    try:
        klab.xdpctl("rule", "add", klab.iface, "pass", "--established")
        foreign = foreign_tc_filter(klab, pins, "ingress", prio=9)
        klab.xdpctl("detach", klab.iface)
        assert tc_filters(klab) == [] and "clsact" in tc_qdiscs(klab)
        assert [f["options"]["prog"]["id"] for f in tc_filters(klab, "ingress")] == [foreign]
    finally:
        import shutil

        shutil.rmtree(pins, ignore_errors=True)


def test_an_ingress_qdisc_leaves_no_place_and_nothing_changes(klab):
    klab.xdpctl("attach", klab.iface, "--policy", "deny")
    import subprocess

    subprocess.run(["tc", "-n", klab.lab.host_netns, "qdisc", "add", "dev", klab.iface, "ingress"], check=True)
    before, qdiscs = local_snapshot(klab), tc_qdiscs(klab)
    r = klab.xdpctl("rule", "add", klab.iface, "pass", "--established", check=False)
    one_line_error(r, 2, "'ingress' qdisc", "clsact", "tc qdisc del dev")
    assert local_snapshot(klab) == before and tc_qdiscs(klab) == qdiscs


@pytest.mark.parametrize("args,fragment", [
    (["rule", "add", "IF", "pass", "--established", "--ethertype", "arp"], "is not IP"),
    (["rule", "add", "IF", "pass", "--established", "--proto", "gre"], "only for TCP, UDP, ICMP"),
    (["rule", "add", "IF", "pass", "--established", "--icmp-type", "8"], "echo replies and errors only"),
    (["attach", "IF", "--policy", "deny", "--flow-timeouts", "tcp=0"], "from 1 to"),
    (["attach", "IF", "--policy", "deny", "--flow-timeouts", "udp=99999999999999999999"], "from 1 to"),
    (["attach", "IF", "--policy", "deny", "--flow-timeouts", "dns=5"], "NAME=SECONDS"),
    (["attach", "IF", "--policy", "deny", "--flow-table-size", "10"], "from 1,024"),
    (["attach", "IF", "--policy", "deny", "--flow-table-size", "4096"], "size is fixed once it is made"),
])
def test_bad_input_is_one_line_and_changes_nothing(klab, args, fragment):
    deny_with_established(klab)
    before = local_snapshot(klab)
    r = klab.xdpctl(*[klab.iface if a == "IF" else a for a in args], check=False)
    one_line_error(r, 2, fragment)
    assert local_snapshot(klab) == before


def test_the_table_is_bounded(klab):
    """Many more flows than the table holds: it keeps its size, and memory,
    and the newest flows."""
    from xdpctl.kernel import libbpf
    from state_checks import attachment

    lab = klab.lab
    deny_with_established(klab, "--flow-table-size", "1024")

    def memlock() -> int:
        with libbpf.opened(attachment(klab).pin("flows")) as fd:
            assert libbpf.map_info(fd).max_entries == 1024
            return libbpf.map_memlock(fd)

    before = memlock()
    with socket_in(lab.host_netns, socket.AF_INET, socket.SOCK_DGRAM) as s:
        for port in range(20000, 24096):  # 4,096 flows, one datagram each
            s.sendto(b"x", (lab.peer4, port))
        last = s.getsockname()[1]
    entry = table(klab)
    assert entry["table"]["size"] == 1024 and entry["table"]["entries"] <= 1024
    assert memlock() == before
    ports = {f["remote_port"] for f in entry["flows"] if f["host_port"] == last}
    # The LRU map evicts the least recently used: it holds the newest flows,
    # but for a few early ones the peer's ICMP errors kept in use.
    assert 24095 in ports and sum(p >= 24096 - 1024 for p in ports) >= 0.9 * len(ports)
    # And a flow opened now is tracked: its replies get in.
    server = Server(lab.netns, socket.AF_INET, lab.peer4, 8081)
    try:
        assert tcp_exchange(lab.host_netns, socket.AF_INET, lab.peer4, 8081, b"after") == b"pong:after"
    finally:
        server.close()
