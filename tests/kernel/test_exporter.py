"""xdpctl exporter on real programs, scraped by a real Prometheus server.

What Prometheus stores equals `stats --json` and `rule list --json` exactly;
interfaces attached and detached while the exporter runs appear and vanish
without a restart; a scrape compiles nothing, imports neither BCC nor scapy,
takes no lock and changes nothing; SIGTERM (exit 0) and Ctrl-C (exit 130)
stop it; CAP_BPF and a read-only bpffs are all it needs (as its unit runs it).

Both servers listen on loopback only, on ports picked free, and are stopped
by the test that started them, failed or not, with their temporary
directories."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Xdpctl, netns_ino
from xdpctl.datapath import contract
from xdpctl.kernel import netlink
from xdpctl.kernel.netlink import socket_in
from xdpctl.lifecycle.state import STATE_ROOT, State
from xdpctl.traffic import frames
from xdpctl.traffic import lab as labs

pytestmark = pytest.mark.kernel

PROMETHEUS = shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None,
                                      reason="needs Debian's prometheus package (scripts/setup.sh installs it)")
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"

# Runs xdpctl, then says which heavy modules it loaded (as test_stats_process.py does for stats).
PROBE = """
import atexit, sys
def report():
    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'bcc', 'scapy'})
    sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')
atexit.register(report)
from xdpctl.cli import main
main(sys.argv[1:])
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_listening(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited {proc.returncode} before listening: {proc.communicate()[1][-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Stop proc with sig (killed if it will not go); its exit code and stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err or ""


@dataclass
class Exporter:
    proc: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"


@contextlib.contextmanager
def exporter(*args: str, prefix: tuple[str, ...] = (), probe: bool = False):
    """`xdpctl [args...] exporter` on 127.0.0.1 and a free port, stopped afterwards."""
    port = free_port()
    head = [sys.executable, "-c", PROBE] if probe else [sys.executable, "-m", "xdpctl"]
    proc = subprocess.Popen([*prefix, *head, *args, "exporter", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        wait_listening(port, proc, "the exporter")
        yield Exporter(proc, port)
    finally:
        stop(proc)


class Prometheus:
    def __init__(self, port: int):
        self.api = f"http://127.0.0.1:{port}/api/v1"

    def query(self, expr: str) -> list[dict]:
        status, body = http_get(f"{self.api}/query?{urllib.parse.urlencode({'query': expr})}")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (expr, body[:500])
        return answer["data"]["result"]

    def wait(self, expr: str, done, timeout: float = 60) -> list[dict]:
        """The query's result once done(result) holds (scrapes come every second)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if done(result):
                return result
            if time.monotonic() > deadline:
                scrapes = {name: self.query(f'{name}{{job="xdpctl"}}')
                           for name in ("up", "scrape_duration_seconds", "scrape_samples_scraped")}
                raise AssertionError(f"after {timeout} s, {expr} still gives {result}; the last scrape: "
                                     + "; ".join(f"{k} {[r['value'][1] for r in v]}" for k, v in scrapes.items()))
            time.sleep(0.5)


@contextlib.contextmanager
def prometheus(target_port: int):
    """A Prometheus server on loopback scraping 127.0.0.1:target_port every
    second, its data in a temporary directory; stopped and removed afterwards."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="xdpctl-prometheus-") as tmp:
        config = Path(tmp, "prometheus.yml")
        config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                          "scrape_configs:\n  - job_name: xdpctl\n    static_configs:\n"
                          f"      - targets: ['127.0.0.1:{target_port}']\n")
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp)
        try:
            wait_listening(port, proc, "prometheus")
            deadline = time.monotonic() + 60
            while http_get(f"http://127.0.0.1:{port}/-/ready")[0] != 200:
                assert time.monotonic() < deadline, "prometheus did not get ready"
                time.sleep(0.2)
            yield Prometheus(port)
        finally:
            stop(proc)


def selector(iface: str, netns: str) -> str:
    return f'{{interface="{iface}",netns="{netns}"}}'


def by(result: list[dict], *labels: str) -> dict:
    return {tuple(r["metric"][label] for label in labels): int(float(r["value"][1])) for r in result}


# The panels of a feature find only the interfaces that use it.
FEATURE_METRICS = {"flows": ("xdpctl_flow",), "limits": ("xdpctl_ban", "xdpctl_limit_")}


def dashboard_queries(feature: str | None = None) -> list[str]:
    """The dashboard's queries of a feature's panels, or (None) of the others."""
    def of(expr: str) -> str | None:
        return next((f for f, names in FEATURE_METRICS.items() if any(n in expr for n in names)), None)

    d = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in d["panels"] for t in p["targets"] if of(t["expr"]) == feature]


def as_queried(expr: str, iface: str, netns: str) -> str:
    """A dashboard query as Grafana sends it, its variables filled in."""
    return (expr.replace("$__rate_interval", "15s").replace("$__range", "1m")
            .replace("$interface", iface).replace("$netns", netns))


@needs_prometheus
def test_prometheus_stores_exactly_what_stats_and_rule_list_say_and_series_follow_attachments(klab):
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "tcp", "--dport", "80")
    klab.xdpctl("rule", "add", klab.iface, "drop", "--src", "203.0.113.0/24")  # never hit
    mix = frames.build("mix", klab.lab.endpoints())
    klab.send(mix, count=len(mix) * 20)
    klab.wait_for_total(len(mix) * 20)
    (stats,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    rules = klab.xdpctl.json("rule", "list", klab.iface)["rules"]
    assert [r["hits"]["packets"] for r in rules] == [40, 0]  # the test's own check of the frame set
    ns = klab.lab.host_netns
    sel = selector(klab.iface, ns)
    cells = len(contract.CLASSES) * len(contract.VERDICTS)

    with exporter() as exp, prometheus(exp.port) as prom:
        packets = prom.wait(f"xdpctl_packets_total{sel}", lambda r: len(r) == cells)
        assert by(packets, "class", "action") == {(c, v): stats["counters"][c][v]["packets"]
                                                  for c in contract.CLASSES for v in contract.VERDICTS}
        nbytes = prom.query(f"xdpctl_bytes_total{sel}")
        assert by(nbytes, "class", "action") == {(c, v): stats["counters"][c][v]["bytes"]
                                                 for c in contract.CLASSES for v in contract.VERDICTS}
        assert sum(by(packets, "class", "action").values()) == len(mix) * 20
        assert by(prom.query(f"xdpctl_rule_packets_total{sel}"), "rule") == {
            (str(r["id"]),): r["hits"]["packets"] for r in rules}
        assert by(prom.query(f"xdpctl_rule_bytes_total{sel}"), "rule") == {
            (str(r["id"]),): r["hits"]["bytes"] for r in rules}
        (info,) = prom.query(f"xdpctl_program_info{sel}")
        assert {k: info["metric"][k] for k in ("prog_id", "mode", "options")} == {
            "prog_id": str(stats["prog_id"]), "mode": "native", "options": "drop-non-ip"}
        assert klab.xdpctl.json("stats", klab.iface)["interfaces"][0]["counters"] == stats["counters"]  # still
        for expr in dashboard_queries():  # the dashboard's queries run, and find this interface
            result = prom.wait(as_queried(expr, klab.iface, ns), lambda r: r != [])  # rate(): two scrapes
            assert {r["metric"].get("interface") for r in result} <= {klab.iface, None}, (expr, result)

        # Detached: its series go at the next scrape, the exporter running on.
        klab.xdpctl("detach", klab.iface)
        prom.wait(f"xdpctl_packets_total{sel}", lambda r: r == [])
        prom.wait(f"xdpctl_rule_packets_total{sel}", lambda r: r == [])
        assert exp.proc.poll() is None

        # A lab attached in the machine's own namespace appears (netns=""),
        # and goes when its interface is deleted without a detach.
        other = labs.up("t" + secrets.token_hex(4))
        stale = None
        try:
            Xdpctl(None)("attach", other.host_if)
            here = selector(other.host_if, "")
            prom.wait(f"xdpctl_packets_total{here}", lambda r: len(r) == cells)
            prom.wait(f"xdpctl_program_info{here}", lambda r: len(r) == 1)
            with netlink.Netlink() as nl:
                ifindex = nl.link(other.host_if).ifindex
                stale = Path(STATE_ROOT) / f"ns{os.stat('/proc/self/ns/net').st_ino}" / f"if{ifindex}"
                nl.link_delete(other.host_if)
            prom.wait(f"xdpctl_packets_total{here}", lambda r: r == [])
            assert exp.proc.poll() is None
            assert prom.query('up{job="xdpctl"}')[0]["value"][1] == "1"
        finally:
            labs.down(other)
            if stale is not None:  # left by the deleted interface, as xdpctl leaves it until a command runs
                shutil.rmtree(stale, ignore_errors=True)
                with contextlib.suppress(OSError):
                    stale.parent.rmdir()
                with contextlib.suppress(OSError):
                    os.rmdir(STATE_ROOT)


@needs_prometheus
def test_the_flow_table_gauges_are_what_flows_says(klab):
    """xdpctl_flows (live), _entries and _size equal `flows --json`, with two
    UDP flows the host opened to the peer; a lab without a table has none."""
    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "pass", "--established")
    lab = klab.lab
    for port in (5401, 5402):  # the egress program records each as it leaves; no server needed
        with socket_in(lab.host_netns, socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"q", (lab.peer4, port))
    (entry,) = klab.xdpctl.json("flows", klab.iface)["interfaces"]
    assert entry["table"]["live"] == 2 and {f["remote_port"] for f in entry["flows"]} == {5401, 5402}
    sel = selector(klab.iface, lab.host_netns)
    with exporter() as exp, prometheus(exp.port) as prom:
        prom.wait(f"xdpctl_flows{sel}", lambda r: len(r) == 1)
        got = {name: int(float(prom.query(f"{name}{sel}")[0]["value"][1]))
               for name in ("xdpctl_flows", "xdpctl_flow_table_entries", "xdpctl_flow_table_size")}
        assert got == {"xdpctl_flows": 2, "xdpctl_flow_table_entries": entry["table"]["entries"],
                       "xdpctl_flow_table_size": entry["table"]["size"]}
        assert entry["table"]["size"] == 262144
        for expr in dashboard_queries("flows"):
            (series,) = prom.wait(as_queried(expr, klab.iface, lab.host_netns), lambda r: r != [])
            assert series["metric"]["interface"] == klab.iface
        # The last --established rule gone, the table goes with its series.
        (rule,) = klab.xdpctl.json("rule", "list", klab.iface)["rules"]
        klab.xdpctl("rule", "del", klab.iface, str(rule["id"]))
        prom.wait(f"xdpctl_flows{sel}", lambda r: r == [])
        assert prom.query(f"xdpctl_program_info{sel}") != []
        assert exp.proc.poll() is None


def state_of(klab) -> dict:
    """What a scrape must not change: the lab's pins (names, inode times),
    its meta, counters and rules as read, and the attached program."""
    ns_dir = Path(STATE_ROOT) / f"ns{netns_ino(klab.lab.host_netns)}"
    pins = {str(p.relative_to(ns_dir)): (os.lstat(p).st_mtime_ns, os.lstat(p).st_ctime_ns, os.lstat(p).st_ino)
            for p in sorted(ns_dir.rglob("*"))}
    (entry,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    return {"pins": pins, "stats": entry, "rules": klab.xdpctl.json("rule", "list", klab.iface)}


def test_a_scrape_takes_no_lock_loads_no_bcc_or_scapy_and_changes_nothing(klab):
    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp", "--dport", "9")
    before = state_of(klab)
    with exporter(probe=True) as exp:
        # Held here: an exporter that took the lock would wait for it (120 s).
        with State().lock(timeout=10):
            start = time.monotonic()
            status, text = http_get(exp.url, timeout=30)
            elapsed = time.monotonic() - start
        assert status == 200, text
        assert f'xdpctl_packets_total{{action="pass",class="ipv4/udp",interface="{klab.iface}",' \
               f'netns="{klab.lab.host_netns}"}} 0.0' in text
        assert f'xdpctl_rule_packets_total{{interface="{klab.iface}",netns="{klab.lab.host_netns}",rule="1"}}' in text
        assert elapsed < 10, f"a scrape took {elapsed:.1f} s with the lock held elsewhere"
        assert http_get(exp.url)[0] == 200
        code, err = stop(exp.proc, signal.SIGTERM)
    assert code == 0, err
    assert "HEAVY=\n" in err, err  # neither bcc nor scapy was ever imported
    assert "Traceback" not in err
    assert state_of(klab) == before


def test_ctrl_c_exits_130_and_sigterm_0(klab):
    klab.xdpctl("attach", klab.iface)
    with exporter() as exp:
        code, err = stop(exp.proc, signal.SIGINT)
    assert code == 130 and err.strip().splitlines()[-1] == "xdpctl: interrupted", err
    with exporter() as exp:
        assert http_get(exp.url)[0] == 200
        code, err = stop(exp.proc, signal.SIGTERM)
    assert code == 0 and err.strip().splitlines() == [f"serving xdpctl's metrics on {exp.url}"], err


def test_a_port_in_use_is_one_line_and_exit_1(klab):
    with exporter() as exp:
        proc = subprocess.run([sys.executable, "-m", "xdpctl", "exporter", "--listen", f"127.0.0.1:{exp.port}"],
                              capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"xdpctl: error: 127.0.0.1:{exp.port} is in use (another exporter?); stop what listens there "
        f"(`ss -ltnp 'sport = :{exp.port}'` shows it), or choose another port with --listen"]


def test_cap_bpf_and_a_read_only_bpffs_are_enough(klab):
    """As xdpctl-exporter.service runs it: CapabilityBoundingSet=CAP_BPF,
    and /sys (bpffs included) read-only (ProtectKernelTunables=yes). The
    read-only mount is made in a mount namespace of the exporter's own."""
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        pytest.skip("needs unshare and setpriv (util-linux)")
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    mix = frames.build("mix", klab.lab.endpoints())
    klab.send(mix)
    counters = klab.wait_for_total(len(mix))
    restricted = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                  'mount -o remount,bind,ro /sys/fs/bpf && exec setpriv --bounding-set=-all,+bpf '
                  '--inh-caps=-all "$@"', "sh")
    with exporter(prefix=restricted) as exp:
        caps = Path(f"/proc/{exp.proc.pid}/status").read_text()
        assert "CapEff:\t0000008000000000" in caps, caps  # CAP_BPF (39) alone
        status, text = http_get(exp.url)
    assert status == 200, text
    line = (f'xdpctl_packets_total{{action="drop",class="arp",interface="{klab.iface}",'
            f'netns="{klab.lab.host_netns}"}} {float(counters["arp"]["drop"]["packets"])}')
    assert counters["arp"]["drop"]["packets"] == 1 and line in text
    # The read-only mount was the exporter's alone: the machine's bpffs stayed writable.
    options = [line.split()[5] for line in Path("/proc/self/mountinfo").read_text().splitlines()
               if line.split()[4] == "/sys/fs/bpf"]
    assert options and options[-1].split(",")[0] == "rw", options  # the last mount there is the one seen


@needs_prometheus
def test_bans_and_evictions_are_served(klab):
    """A rule with --over and --block: after a burst the peer is banned; the
    scrape serves the live bans, what they dropped, and the evictions; a real
    Prometheus stores them and the dashboard's panel of them finds the lab."""
    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "drop", "--over", "1/h", "--burst", "2", "--block", "1h",
                "--proto", "udp")
    klab.send([frames.udp_frame(klab.lab.endpoints(), b"x" * 18)], 5)
    klab.wait_for_total(5)
    labels = f'{{interface="{klab.iface}",netns="{klab.lab.host_netns}"}}'
    with exporter(probe=False) as exp:
        status, text = http_get(exp.url, timeout=30)
        assert status == 200, text
        assert f"xdpctl_bans{labels} 1.0" in text
        assert f"xdpctl_ban_dropped_packets{labels} 2.0" in text  # the 4th and 5th frames
        assert f"xdpctl_limit_evictions{labels} 0.0" in text
        with prometheus(exp.port) as prom:
            for expr in dashboard_queries("limits"):
                (series,) = prom.wait(as_queried(expr, klab.iface, klab.lab.host_netns), lambda r: r != [])
                assert series["metric"]["interface"] == klab.iface
            sel = selector(klab.iface, klab.lab.host_netns)
            assert int(float(prom.query(f"xdpctl_ban_dropped_packets{sel}")[0]["value"][1])) == 2
        code, err = stop(exp.proc, signal.SIGTERM)
    assert code == 0, err
