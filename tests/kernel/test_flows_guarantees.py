"""The guarantees of --established: no established connection is cut by a
rule change or a program replace (the flow table survives them), and a
SIGKILL at each step of bringing or taking away the egress side leaves the
old state or the new one, which `clean` settles.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from conftest import attached_prog_id
from flowbed import Server, tc_filters, tc_qdiscs, tcp_exchange
from state_checks import check_consistent, state_dir
from xdpctl import faults
from xdpctl.kernel.netlink import socket_in

pytestmark = pytest.mark.kernel

TRAILER = struct.Struct("!4sQ")  # b"\0END", bytes sent before it


class PacedServer(Server):
    """Streams chunks, paced, to each connection until it says stop; then a
    trailer with the count of bytes it sent, and its TCP retransmissions."""

    def _serve(self, conn: socket.socket) -> None:
        sent, chunk = 0, b"s" * 16384
        try:
            conn.recv(16)  # "go"
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not self.stop.is_set():
                conn.sendall(chunk)
                sent += len(chunk)
                if select.select([conn], [], [], 0.01)[0]:  # "stop" (and 10 ms of pacing)
                    conn.recv(16)  # read, or closing would reset the connection
                    break
            info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            self.retransmits = struct.unpack_from("I", info, 100)[0]  # tcpi_total_retrans
            conn.sendall(TRAILER.pack(b"\0END", sent))
        except OSError as exc:
            self.errors.append(exc)
        finally:
            conn.close()


class Reader(threading.Thread):
    """The host's end: reads everything, noting the longest pause between reads."""

    def __init__(self, sock: socket.socket):
        super().__init__(daemon=True)
        self.sock, self.data, self.gap, self.error = sock, bytearray(), 0.0, None

    def run(self) -> None:
        last = time.monotonic()
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                now = time.monotonic()
                self.gap = max(self.gap, now - last)
                last = now
                if not chunk:
                    return
                self.data += chunk
        except OSError as exc:
            self.error = exc


def entries(klab):
    """The flow table's entries, read from its pin (first_seen to the nanosecond)."""
    from xdpctl.datapath import contract
    from xdpctl.datapath.flow_table import Flow
    from xdpctl.kernel import libbpf
    from state_checks import attachment

    with libbpf.opened(attachment(klab).pin(contract.PIN_FLOWS)) as fd:
        raw = libbpf.map_lookup_batch(fd, contract.FLOW_KEY.size, contract.FLOW.size, 1024)
    return [Flow.decode(k, v) for k, v in raw]


def test_a_live_transfer_survives_rule_changes_and_program_replaces(klab, tmp_path):
    lab, iface = klab.lab, klab.iface
    klab.xdpctl("attach", iface, "--policy", "deny")
    klab.xdpctl("rule", "add", iface, "pass", "--established")
    egress_before = klab.xdpctl.json("status")["interfaces"][0]["egress"]
    server = PacedServer(lab.netns, socket.AF_INET, lab.peer4, 9000)
    conn = socket_in(lab.host_netns, socket.AF_INET, socket.SOCK_STREAM)
    try:
        conn.settimeout(30)
        conn.connect((lab.peer4, 9000))
        conn.sendall(b"go")
        reader = Reader(conn)
        reader.start()
        time.sleep(1.0)
        (before,) = entries(klab)
        progs = {attached_prog_id(klab)}
        config = tmp_path / "xdpctl.toml"
        config.write_text(f'[interfaces.{iface}]\npolicy = "deny"\ndrop_non_ip = true\nrules = [\n'
                          '  { action = "pass", established = true },\n'
                          '  { action = "pass", proto = "tcp", dport = 22 },\n'
                          '  { action = "drop", vlan = 42 },\n'
                          '  { action = "pass", proto = "icmp", icmp_type = 8 },\n]\n')
        os.chmod(config, 0o600)
        changes = [
            ("rule", "add", iface, "pass", "--proto", "tcp", "--dport", "22"),  # maps only
            ("rule", "add", iface, "drop", "--vlan", "42"),  # a new kind: recompiled and replaced
            ("attach", iface, "--policy", "deny", "--drop-non-ip"),  # new options: replaced
            ("apply", str(config)),  # a new kind again (ICMP), from a file
            ("rule", "del", iface, "2"),
        ]
        for change in changes:
            klab.xdpctl(*change)
            progs.add(attached_prog_id(klab))
        (after,) = entries(klab)
        conn.sendall(b"stop")
        reader.join(timeout=60)
    finally:
        conn.close()
        server.close()
    assert reader.error is None and not server.errors  # no reset
    data = bytes(reader.data)
    marker, sent = TRAILER.unpack(data[-TRAILER.size:])
    assert marker == b"\0END" and sent == len(data) - TRAILER.size > 1 << 20
    assert len(progs) >= 4  # the program was replaced three times meanwhile
    # Not one frame of it was dropped, and it never stalled beyond a retransmit.
    assert klab.counters()["ipv4/tcp"]["drop"]["packets"] == 0
    assert reader.gap < 1.5, reader.gap
    # The flow stayed in the table, the same entry throughout, and so did the egress program.
    assert (after.first_seen, after.host_port) == (before.first_seen, before.host_port)
    assert after.packets_in > before.packets_in + 100
    assert klab.xdpctl.json("status")["interfaces"][0]["egress"] == egress_before
    check_consistent(klab)


def killed_at(klab, point: str, *args: str) -> None:
    env = dict(os.environ, **{faults.ENV: point})
    r = subprocess.run([sys.executable, "-m", "xdpctl", "--netns", klab.lab.host_netns, *args],
                       env=env, capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == -9, (point, r.stderr)


def egress_state(klab) -> str:
    """"with": the program has the lookup, xdpctl's filter is on egress and is
    the one it records; "without": none of it is there. Anything else fails."""
    info = check_consistent(klab)
    rules = klab.xdpctl.json("rule", "list", klab.iface)["rules"]
    established = [r for r in rules if r["match"].get("established")]
    (entry,) = klab.xdpctl.json("flows", klab.iface)["interfaces"]
    filters = tc_filters(klab)
    if established:
        assert entry["egress"]["attached"] and entry["table"] is not None
        assert [f["options"]["prog"]["id"] for f in filters] == [entry["egress"]["prog_id"]]
        assert {"flows", "egress", "egress_prog"} <= set(info["pins"])
        return "with"
    assert entry["egress"] is None and entry["table"] is None
    assert filters == [] and "clsact" not in tc_qdiscs(klab)
    assert not {"flows", "egress", "egress_prog"} & set(info["pins"])
    return "without"


# Before the XDP swap, the old state stays; once the swap is recorded, the new one.
ADD_OUTCOME = {"flip-pinned": "without", "pinned-new": "without", "egress-recorded": "without",
               "egress-qdisc": "without", "egress-attached": "without", "swapped": "without",
               "flipped": "without", "recorded": "with"}


@pytest.mark.parametrize("point", list(ADD_OUTCOME))
def test_the_first_established_rule_killed_at_each_step(klab, point):
    lab = klab.lab
    klab.xdpctl("attach", klab.iface, "--policy", "deny")
    old = attached_prog_id(klab)
    killed_at(klab, point, "rule", "add", klab.iface, "pass", "--established")
    cleaned = klab.xdpctl.json("clean")["leftovers"]
    here = str(state_dir(klab))  # other namespaces' state may be there too, another test's
    assert [c["action"] for c in cleaned if c["path"].startswith(here + "/")] == ["settle"], cleaned
    assert egress_state(klab) == ADD_OUTCOME[point]
    if ADD_OUTCOME[point] == "without":
        assert attached_prog_id(klab) == old
        klab.xdpctl("rule", "add", klab.iface, "pass", "--established")  # and it can be done again
    server = Server(lab.netns, socket.AF_INET, lab.peer4, 8082)
    try:
        assert tcp_exchange(lab.host_netns, socket.AF_INET, lab.peer4, 8082, b"x") == b"pong:x"
    finally:
        server.close()
    assert egress_state(klab) == "with"


# Taking it away: the flip and the release follow the swap.
DEL_OUTCOME = {"flip-pinned": "with", "pinned-new": "with", "swapped": "with", "flipped": "with",
               "recorded": "without"}


@pytest.mark.parametrize("point", list(DEL_OUTCOME))
def test_the_last_established_rule_deleted_killed_at_each_step(klab, point):
    klab.xdpctl("attach", klab.iface, "--policy", "deny")
    klab.xdpctl("rule", "add", klab.iface, "pass", "--established")
    killed_at(klab, point, "rule", "del", klab.iface, "1")
    klab.xdpctl("clean")
    assert egress_state(klab) == DEL_OUTCOME[point]
    klab.xdpctl("detach", klab.iface)
    assert tc_filters(klab) == [] and "clsact" not in tc_qdiscs(klab) and attached_prog_id(klab) == 0


@pytest.mark.parametrize("point", ["egress-attached", "swapped", "recorded"])
def test_a_first_attach_with_established_from_a_file_killed(klab, point, tmp_path):
    config = tmp_path / "xdpctl.toml"
    config.write_text(f'[interfaces.{klab.iface}]\npolicy = "deny"\nrules = [{{ action = "pass", established = true }}]\n')
    os.chmod(config, 0o600)
    killed_at(klab, point, "apply", str(config))
    klab.xdpctl("clean")
    if point == "recorded":
        assert egress_state(klab) == "with"
        klab.xdpctl("detach", klab.iface)
    assert attached_prog_id(klab) == 0 and tc_filters(klab) == [] and "clsact" not in tc_qdiscs(klab)
    assert klab.xdpctl.json("status")["interfaces"] == []
