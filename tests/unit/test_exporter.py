"""The exporter without a kernel: its metric families, names and labels from
readings made up here, the verdicts it follows from the contract, --listen,
the socket and its errors, the HTTP answers, the netns labels. No root: the
server listens on loopback, on a port the kernel picks, and is stopped by
each test."""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from xdpctl import validate
from xdpctl.cli import cli
from xdpctl.cli.app import App
from xdpctl.datapath import contract, counters
from xdpctl.errors import BadInput, KernelError, XdpctlError
from xdpctl.observe import exporter, scrape
from xdpctl.observe.flows import TableSize
from xdpctl.observe.scrape import Reading, RuleHits
from xdpctl.rules import engine
from xdpctl.rules.model import ACTIONS, Rule, parse_match


def made_up_counters(seed: int) -> counters.Counters:
    """Different numbers in every cell, to tell each from the others."""
    out = counters.empty()
    for i, cls in enumerate(contract.CLASSES):
        for j, verdict in enumerate(contract.VERDICTS):
            n = seed * 1000 + i * 10 + j + 1
            out[cls][verdict] = {"packets": n, "bytes": n * 64}
    return out


def readings() -> list[Reading]:
    return [
        Reading("eth0", "", 41, "native", ("drop-non-ip",), made_up_counters(1),
                (RuleHits(1, 7, 448), RuleHits(3, 0, 0))),
        Reading("eth0", "blue", 57, "generic", ("drop-non-ip", "policy deny"), made_up_counters(2), (),
                TableSize(live=5, entries=9, size=262144)),
    ]


def scrape_text(read, rule_metrics: bool = True) -> str:
    from prometheus_client import generate_latest

    return generate_latest(exporter.registry_for(read, rule_metrics)).decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"a sample twice: {key}"
            out[key] = s.value
    return out


def test_class_counters_every_class_and_action_with_exact_values():
    got = samples(scrape_text(readings))
    for r in readings():
        for cls in contract.CLASSES:
            for action in contract.VERDICTS:
                labels = tuple(sorted({"interface": r.interface, "netns": r.netns, "class": cls,
                                       "action": action}.items()))
                assert got[("xdpctl_packets_total", labels)] == r.counters[cls][action]["packets"]
                assert got[("xdpctl_bytes_total", labels)] == r.counters[cls][action]["bytes"]
    n = 2 * len(contract.CLASSES) * len(contract.VERDICTS)
    assert sum(1 for name, _ in got if name == "xdpctl_packets_total") == n
    assert sum(1 for name, _ in got if name == "xdpctl_bytes_total") == n


def test_rule_hits_by_rule_id_and_program_info():
    got = samples(scrape_text(readings))
    rule = lambda i: (("interface", "eth0"), ("netns", ""), ("rule", str(i)))  # noqa: E731
    assert got[("xdpctl_rule_packets_total", rule(1))] == 7
    assert got[("xdpctl_rule_bytes_total", rule(1))] == 448
    assert got[("xdpctl_rule_packets_total", rule(3))] == 0  # a rule with no hits has its series
    assert sum(1 for name, _ in got if name.startswith("xdpctl_rule_")) == 4
    info = {labels: v for (name, labels), v in got.items() if name == "xdpctl_program_info"}
    assert info == {
        (("interface", "eth0"), ("mode", "native"), ("netns", ""), ("options", "drop-non-ip"),
         ("prog_id", "41")): 1.0,
        (("interface", "eth0"), ("mode", "generic"), ("netns", "blue"), ("options", "drop-non-ip,policy deny"),
         ("prog_id", "57")): 1.0,
    }


def test_the_names_and_types_served():
    text = scrape_text(readings)
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert types == {"xdpctl_packets": "counter", "xdpctl_bytes": "counter", "xdpctl_rule_packets": "counter",
                     "xdpctl_rule_bytes": "counter", "xdpctl_program_info": "gauge", "xdpctl_flows": "gauge",
                     "xdpctl_flow_table_entries": "gauge", "xdpctl_flow_table_size": "gauge", "xdpctl_bans": "gauge",
                     "xdpctl_ban_dropped_packets": "gauge", "xdpctl_limit_evictions": "gauge"}
    limits = {"xdpctl_bans", "xdpctl_ban_dropped_packets", "xdpctl_limit_evictions"}
    assert {name for name, _ in samples(text)} | limits == exporter.metric_names() == {
        "xdpctl_packets_total", "xdpctl_bytes_total", "xdpctl_rule_packets_total", "xdpctl_rule_bytes_total",
        "xdpctl_program_info", "xdpctl_flows", "xdpctl_flow_table_entries", "xdpctl_flow_table_size", *limits}
    assert "_created" not in text  # no second series per counter


def test_no_rule_metrics_leaves_out_the_rule_series_only():
    text = scrape_text(readings, rule_metrics=False)
    names = {name for name, _ in samples(text)}
    limits = {"xdpctl_bans", "xdpctl_ban_dropped_packets", "xdpctl_limit_evictions"}
    assert names | limits == exporter.metric_names(False) == {
        "xdpctl_packets_total", "xdpctl_bytes_total", "xdpctl_program_info", "xdpctl_flows",
        "xdpctl_flow_table_entries", "xdpctl_flow_table_size", *limits}


def test_flow_table_gauges_only_for_interfaces_with_a_table():
    got = samples(scrape_text(readings))
    blue = (("interface", "eth0"), ("netns", "blue"))
    assert {name: v for (name, labels), v in got.items() if name.startswith("xdpctl_flow")} == {
        "xdpctl_flows": 5, "xdpctl_flow_table_entries": 9, "xdpctl_flow_table_size": 262144}
    assert {labels for (name, labels) in got if name.startswith("xdpctl_flow")} == {blue}


def test_new_verdicts_of_the_contract_are_exported_with_no_change(monkeypatch):
    """Another branch adds redirect, tx and aborted to the contract's
    verdicts: they must come out as actions on their own."""
    verdicts = ("pass", "drop", "redirect", "tx", "aborted")
    monkeypatch.setattr(contract, "VERDICTS", verdicts)
    got = samples(scrape_text(readings))
    actions = {dict(labels)["action"] for name, labels in got if name == "xdpctl_packets_total"}
    assert actions == set(verdicts)
    key = ("xdpctl_bytes_total", (("action", "aborted"), ("class", "arp"), ("interface", "eth0"), ("netns", "")))
    assert got[key] == made_up_counters(1)["arp"]["aborted"]["bytes"]


def test_nothing_attached_serves_the_families_without_samples():
    text = scrape_text(lambda: [])
    assert samples(text) == {}
    assert "# TYPE xdpctl_packets_total counter" in text


def test_each_scrape_reads_anew():
    calls = []

    def read():
        calls.append(1)
        return readings()[: len(calls) % 2]

    registry = exporter.registry_for(read)
    from prometheus_client import generate_latest

    first, second = (samples(generate_latest(registry).decode()) for _ in range(2))
    assert len(calls) == 2 and first and not second  # an interface detached between scrapes is gone


def test_a_family_is_one_function():
    """Adding one (bans, flows) is one function in the list."""
    from prometheus_client.core import GaugeMetricFamily

    def bans(rs):
        g = GaugeMetricFamily("xdpctl_bans", "test", labels=("interface",))
        for r in rs:
            g.add_metric((r.interface,), 2)
        yield g

    collector = exporter.XdpctlCollector(readings, (*exporter.families(), bans))
    names = {s.name for m in collector.collect() for s in m.samples}
    assert "xdpctl_bans" in names and "xdpctl_packets_total" in names


# --- reading the rules' slots ------------------------------------------------------


def test_rule_id_and_slot_are_decoded_from_the_packed_rule():
    rule = Rule(ACTIONS["drop"], parse_match({"src": "192.0.2.0/24", "proto": "udp", "dport": "53"}), 900, True,
                id=4242, seq=17, slot=99)
    rule_id, slot = engine.RULE_ID_SLOT.unpack_from(rule.pack())
    assert (rule_id, slot) == (4242, 99)


# --- network namespaces ------------------------------------------------------------


def test_netns_labels(tmp_path):
    names = tmp_path / "netns"
    names.mkdir()
    for name in ("red", "blue"):
        (names / name).write_text("")
    (names / "alias-of-blue").hardlink_to(names / "blue")  # one namespace, two names: the first in order
    label = scrape.netns_labels(host_ino=1234, names_dir=str(names))
    assert label(1234) == ""
    assert label(os.stat(names / "red").st_ino) == "red"
    assert label(os.stat(names / "blue").st_ino) == "alias-of-blue"
    assert label(987654) == "987654"
    assert scrape.netns_labels(1, names_dir=str(tmp_path / "none"))(5) == "5"


def test_machine_netns_is_pid_1s_or_this_process_s():
    assert scrape.machine_netns_ino() in {os.stat(p).st_ino for p in ("/proc/self/ns/net", "/proc/1/ns/net")
                                          if os.access(p, os.F_OK)}


# --- --listen ----------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9435", ("127.0.0.1", 9435)),
    ("0.0.0.0:9435", ("0.0.0.0", 9435)),
    ("[::1]:9435", ("::1", 9435)),
    ("[::]:1", ("::", 1)),
    ("10.1.2.3:65535", ("10.1.2.3", 65535)),
])
def test_listen_addresses(text, expected):
    assert validate.listen_address(text) == expected


@pytest.mark.parametrize("text, why", [
    ("9435", "is not ADDRESS:PORT"),
    (":9435", "is not ADDRESS:PORT"),
    ("::1:9435", "in brackets, as [::1]:9435"),
    ("localhost:9435", "a host name is not taken"),
    ("example.org:9435", "a host name is not taken"),
    ("127.0.0.01:9435", "not an IP address"),
    ("[127.0.0.1]:9435", "not an IPv6 address"),
    ("[::1]", "is not ADDRESS:PORT"),
    ("127.0.0.1:0", "from 1 to 65535"),
    ("127.0.0.1:65536", "from 1 to 65535"),
    ("127.0.0.1:-1", "from 1 to 65535"),
    ("127.0.0.1:http", "from 1 to 65535"),
    ("127.0.0.1:", "from 1 to 65535"),
    ("127.0.0.1:9435 ", "from 1 to 65535"),
])
def test_bad_listen_addresses(text, why):
    with pytest.raises(BadInput, match=why.replace("[", r"\[").replace("]", r"\]")):
        validate.listen_address(text)


def test_a_bad_listen_address_is_one_line_and_exit_2():
    result = CliRunner().invoke(cli, ["exporter", "--listen", "localhost:9435"], obj=App())
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("xdpctl: error: Invalid value for '--listen'") and "a host name is not taken" in line
    result = CliRunner().invoke(cli, ["exporter"], obj=App(), env={"XDPCTL_EXPORTER_LISTEN": "::1:80"})
    assert result.exit_code == 2 and "in brackets" in result.stderr


# --- the socket and HTTP -----------------------------------------------------------


class Serving:
    """A server on loopback, port picked by the kernel, stopped on exit."""

    def __init__(self, read, host="127.0.0.1", warn=None):
        self.warnings = []
        app = exporter.wsgi_app(exporter.registry_for(read), warn or self.warnings.append)
        self.server = exporter.bind(host, 0, app)
        self.port = self.server.server_address[1]
        self.url = f"http://{exporter.where(host, self.port)}/metrics"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_served_over_http_on_ipv4_and_ipv6():
    with Serving(readings) as s:
        status, text = get(s.url)
        assert status == 200 and samples(text) == samples(scrape_text(readings))
    if socket.has_ipv6 and os.path.exists("/proc/net/if_inet6"):
        with Serving(readings, host="::1") as s:
            assert s.url.startswith("http://[::1]:")
            assert get(s.url) == (200, text)


def test_a_failed_scrape_is_an_http_500_and_one_warning_while_it_repeats():
    state = {"fail": True}

    def read():
        if state["fail"]:
            raise KernelError("reading /sys/fs/bpf/xdpctl/ns1/if2 failed: Bad address")
        return readings()

    with Serving(read) as s:
        for _ in range(3):
            status, body = get(s.url)
            assert status == 500
            assert body == "xdpctl: error: reading /sys/fs/bpf/xdpctl/ns1/if2 failed: Bad address\n"
        assert s.warnings == ["a scrape failed: reading /sys/fs/bpf/xdpctl/ns1/if2 failed: Bad address"]
        state["fail"] = False
        assert get(s.url)[0] == 200
        state["fail"] = True
        assert get(s.url)[0] == 500
        assert len(s.warnings) == 2  # said again after a good scrape


def test_a_bug_in_a_scrape_is_one_line_too():
    def read():
        raise ValueError("boom")

    with Serving(read) as s:
        status, body = get(s.url)
        assert status == 500 and "Traceback" not in body
        assert s.warnings == ["a scrape failed: internal error: ValueError: boom (a bug in xdpctl)"]


def test_a_port_in_use_is_refused_in_one_line():
    with Serving(readings) as s:
        with pytest.raises(XdpctlError, match=rf"127.0.0.1:{s.port} is in use .*--listen"):
            exporter.bind("127.0.0.1", s.port, lambda *a: [])


def test_an_address_not_on_this_machine_is_bad_input():
    with pytest.raises(BadInput, match="192.0.2.1 is not an address of this machine"):
        exporter.bind("192.0.2.1", 9435, lambda *a: [])  # TEST-NET-1: bound nowhere, nothing is sent


def test_a_privileged_port_without_the_capability():
    err = exporter._listen_error(OSError(errno.EACCES, "Permission denied"), "127.0.0.1", 80)
    assert "listening on port 80 needs CAP_NET_BIND_SERVICE" in str(err) and "--listen" in str(err)
    start = exporter._unprivileged_port_start()
    if os.geteuid() != 0 and start > 1:  # as the unit tests run in CI (nobody): the real refusal
        with pytest.raises(XdpctlError, match="needs CAP_NET_BIND_SERVICE"):
            exporter.bind("127.0.0.1", start - 1, lambda *a: [])


# --- stopping ----------------------------------------------------------------------

RUN = """
import sys
from xdpctl.cli.app import App
from xdpctl.kernel import privileges
from xdpctl.observe import exporter
privileges.require_bpf = lambda *args, **kw: None  # no root here: the state root is a directory of its own
try:
    exporter.run(App(state_root=sys.argv[1]), ("127.0.0.1", int(sys.argv[2])), rule_metrics=True,
                 ready=lambda url: print("ready", url, file=sys.stderr, flush=True), warn=print)
except KeyboardInterrupt:
    sys.exit(130)
sys.exit(0)
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_stop_it_even_while_it_serves(tmp_path, sig, code):
    """Whichever thread the kernel hands the signal to (the server's are
    busy with scrapes here), the exporter stops at once."""
    import subprocess
    import sys
    import time

    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-c", RUN, str(tmp_path / "state"), str(port)],
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr.readline().startswith(f"ready http://127.0.0.1:{port}/metrics")
            for _ in range(5):
                assert get(f"http://127.0.0.1:{port}/metrics")[0] == 200
            started = time.monotonic()
            proc.send_signal(sig)
            assert proc.wait(timeout=10) == code
            assert time.monotonic() - started < 5
            assert "Traceback" not in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()


# --- which attachments a scrape counts -------------------------------------------------


class FakeAttachment:
    """An attachment whose meta is given; its maps are never opened (the
    counters reader is replaced)."""

    def __init__(self, meta, ifindex=7):
        self.ifindex = ifindex
        self.netns_ino = 99
        self.path = f"/nonexistent/ns99/if{ifindex}"
        self._meta = meta

    def read_meta(self):
        return self._meta

    def pin(self, name):
        return f"{self.path}/{name}"

    def exists(self):
        return True


def meta(**kw) -> contract.Meta:
    fields = dict(abi_version=contract.ABI_VERSION, ifindex=7, netns_ino=99, prog_id=41, pending_prog_id=0,
                  mode=contract.MODES["native"], options=contract.OPT_DROP_NON_IP, attached_at=1, features=0,
                  ifname="eth7")
    fields.update(kw)
    return contract.Meta(**fields)


@pytest.fixture
def no_maps(monkeypatch):
    monkeypatch.setattr(scrape.counters, "read", lambda pin: made_up_counters(3))


def test_another_namespace_is_read_as_recorded(no_maps):
    r = scrape.read_attachment(FakeAttachment(meta()), "blue", live=None, rules=True)
    assert (r.interface, r.netns, r.prog_id, r.mode, r.options) == ("eth7", "blue", 41, "native", ("drop-non-ip",))
    assert r.counters == made_up_counters(3) and r.rules == ()  # no rule engine in this layout


@pytest.mark.parametrize("live, expected", [
    ({7: scrape.Live("renamed7", 41, "native")}, ("renamed7", 41)),  # netlink's name is the current one
    ({7: scrape.Live("eth7", 42, "native")}, ("eth7", 42)),  # mid-swap: the pending program is attached
    ({}, None),  # the interface was deleted without a detach
    ({7: scrape.Live("eth7", 0, "")}, None),  # nothing attached any more
    ({7: scrape.Live("eth7", 555, "native")}, None),  # another tool's program replaced xdpctl's
    ({8: scrape.Live("eth7", 41, "native")}, None),  # the name alone proves nothing
])
def test_in_its_own_namespace_netlink_confirms_the_program(no_maps, live, expected):
    r = scrape.read_attachment(FakeAttachment(meta(pending_prog_id=42)), "", live=live, rules=False)
    assert (r and (r.interface, r.prog_id)) == expected


@pytest.mark.parametrize("recorded", [None, meta(abi_version=contract.ABI_VERSION + 1), meta(prog_id=0)])
def test_half_made_or_foreign_state_is_left_out(no_maps, recorded):
    assert scrape.read_attachment(FakeAttachment(recorded), "", live=None, rules=True) is None


class FakeState:
    def __init__(self, attachments):
        self._attachments = attachments

    def check(self):
        return True

    def attachments(self):
        return self._attachments


def test_one_attachment_that_cannot_be_read_leaves_the_others(no_maps, monkeypatch):
    good, bad = FakeAttachment(meta(), ifindex=7), FakeAttachment(meta(ifname="eth8"), ifindex=8)

    def read_meta_fails():
        raise KernelError("reading /nonexistent/ns99/if8/meta failed: Invalid argument")

    bad.read_meta = read_meta_fails
    told = []
    got = scrape.read_all(FakeState([bad, good]), rules=False, host_ino=1, own_ino=2, own_links=dict,
                          left_out=told.append)
    assert [r.interface for r in got] == ["eth7"] and told == [
        "reading /nonexistent/ns99/if8/meta failed: Invalid argument"]
    with pytest.raises(KernelError):  # without left_out, the error is the caller's
        scrape.read_all(FakeState([bad, good]), rules=False, host_ino=1, own_ino=2, own_links=dict)
    from xdpctl.errors import MissingCapability

    def no_capability():
        raise MissingCapability("reading /nonexistent/ns99/if8", "CAP_BPF")

    bad.read_meta = no_capability
    with pytest.raises(MissingCapability):  # no one attachment's: the scrape fails (HTTP 500)
        scrape.read_all(FakeState([bad, good]), rules=False, host_ino=1, own_ino=2, own_links=dict,
                        left_out=told.append)
