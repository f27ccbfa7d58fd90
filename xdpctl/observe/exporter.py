"""The Prometheus exporter: xdpctl's counters as metrics, read from the pins
at every scrape (observe/scrape.py) and served on /metrics.

The only module that imports prometheus_client (an import-linter contract
in pyproject.toml). The exposition format, its content negotiation
(OpenMetrics, gzip) and the WSGI application are prometheus_client's. This
module says which metric families there are and where their samples come
from, and binds the listening socket itself (the standard library's WSGI
server, as prometheus_client's own start_http_server does), so that a bad
address, a port in use or a privileged port is a typed error before
anything is served, and a failed scrape is one line in the log and an HTTP
500 (Prometheus's `up` goes to 0), never a traceback.

Each metric family is one function from the scrape's readings to metric
families (FAMILIES). A new one (bans, flows) is one more function there.
"""

from __future__ import annotations

import errno
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..datapath import contract
from ..errors import BadInput, KernelError, XdpctlError
from ..kernel import privileges
from . import scrape
from .scrape import Reading

Family = Callable[[Sequence[Reading]], Iterator[Metric]]

# --- the metric families -----------------------------------------------------------

IFACE_LABELS = ("interface", "netns")


def class_counters(readings: Sequence[Reading]) -> Iterator[Metric]:
    """xdpctl_packets_total and xdpctl_bytes_total, per protocol class and
    action: every class and every verdict the contract declares, so a
    verdict added there (redirect, tx, ...) is exported with no change here."""
    labels = (*IFACE_LABELS, "class", "action")
    packets = CounterMetricFamily(
        "xdpctl_packets", "Frames xdpctl's XDP program decided, by protocol class and action.", labels=labels)
    nbytes = CounterMetricFamily(
        "xdpctl_bytes", "Bytes of those frames: the Ethernet frame as XDP sees it, VLAN tags included, "
        "without the FCS.", labels=labels)
    for r in readings:
        for cls in contract.CLASSES:
            for action in contract.VERDICTS:
                count = r.counters[cls][action]
                values = (r.interface, r.netns, cls, action)
                packets.add_metric(values, count["packets"])
                nbytes.add_metric(values, count["bytes"])
    yield packets
    yield nbytes


def rule_hits(readings: Sequence[Reading]) -> Iterator[Metric]:
    """xdpctl_rule_packets_total and xdpctl_rule_bytes_total: the frames
    each rule decided, by rule id (`xdpctl rule list` shows the rule)."""
    labels = (*IFACE_LABELS, "rule")
    packets = CounterMetricFamily(
        "xdpctl_rule_packets", "Frames a rule decided (its hits), by rule id.", labels=labels)
    nbytes = CounterMetricFamily("xdpctl_rule_bytes", "Bytes of the frames a rule decided, by rule id.",
                                 labels=labels)
    for r in readings:
        for hit in r.rules:
            values = (r.interface, r.netns, str(hit.rule_id))
            packets.add_metric(values, hit.packets)
            nbytes.add_metric(values, hit.bytes)
    yield packets
    yield nbytes


def program_info(readings: Sequence[Reading]) -> Iterator[Metric]:
    """xdpctl_program_info = 1: which program each interface carries, how."""
    info = InfoMetricFamily("xdpctl_program", "The XDP program xdpctl attached to an interface (always 1).",
                            labels=IFACE_LABELS)
    for r in readings:
        info.add_metric((r.interface, r.netns),
                        {"prog_id": str(r.prog_id), "mode": r.mode, "options": ",".join(r.options)})
    yield info


def limits(readings: Sequence[Reading]) -> Iterator[Metric]:
    """xdpctl_bans, xdpctl_ban_dropped_packets and xdpctl_limit_evictions:
    the ban list and the rate limits' tables (gauges; only interfaces whose
    program has them)."""
    bans = GaugeMetricFamily("xdpctl_bans", "Live bans on the interface's ban list.", labels=IFACE_LABELS)
    dropped = GaugeMetricFamily("xdpctl_ban_dropped_packets",
                                "Frames the live bans dropped (each since its ban).", labels=IFACE_LABELS)
    evicted = GaugeMetricFamily("xdpctl_limit_evictions",
                                "Keys the limited rules' tables evicted (a table that churns: spoofed sources).",
                                labels=IFACE_LABELS)
    for r in readings:
        values = (r.interface, r.netns)
        if r.bans is not None:
            bans.add_metric(values, r.bans[0])
            dropped.add_metric(values, r.bans[1])
        if r.evictions is not None:
            evicted.add_metric(values, r.evictions)
    yield bans
    yield dropped
    yield evicted


def flow_tables(readings: Sequence[Reading]) -> Iterator[Metric]:
    """Gauges of the flow table of --established (`xdpctl flows`), for the
    interfaces that have one."""
    live = GaugeMetricFamily("xdpctl_flows", "Flows the host opened that --established tracks now (their "
                             "timeouts not passed), as `xdpctl flows` lists them.", labels=IFACE_LABELS)
    entries = GaugeMetricFamily("xdpctl_flow_table_entries", "Entries the flow table holds, live and expired "
                                "(expired ones stay until the LRU map reuses them).", labels=IFACE_LABELS)
    size = GaugeMetricFamily("xdpctl_flow_table_size", "The most entries the flow table holds "
                             "(attach --flow-table-size).", labels=IFACE_LABELS)
    for r in readings:
        if r.flows is not None:
            values = (r.interface, r.netns)
            live.add_metric(values, r.flows.live)
            entries.add_metric(values, r.flows.entries)
            size.add_metric(values, r.flows.size)
    yield live
    yield entries
    yield size


def families(rule_metrics: bool = True) -> tuple[Family, ...]:
    """The families a scrape serves; the per-rule ones only with rule_metrics."""
    return (class_counters, program_info, flow_tables, limits, *((rule_hits,) if rule_metrics else ()))


def metric_names(rule_metrics: bool = True) -> set[str]:
    """The names of the samples served (as PromQL sees them)."""
    names = set()
    for family in families(rule_metrics):
        for metric in family(()):
            names.add(metric.name + {"counter": "_total", "info": "_info"}.get(metric.type, ""))
    return names


class XdpctlCollector(Collector):
    """A collector whose samples are read from the maps at each scrape.
    Scrapes that overlap read one after the other."""

    def __init__(self, read: Callable[[], Sequence[Reading]], serve: Iterable[Family] = families()):
        self._read = read
        self._families = tuple(serve)
        self._lock = threading.Lock()

    def describe(self) -> Iterator[Metric]:
        for family in self._families:
            yield from family(())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            readings = self._read()
        for family in self._families:
            yield from family(readings)


def registry_for(read: Callable[[], Sequence[Reading]], rule_metrics: bool = True) -> CollectorRegistry:
    """A registry of xdpctl's metrics alone (none of the client's process
    or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(XdpctlCollector(read, families(rule_metrics)))
    return registry


# --- serving -----------------------------------------------------------------------


def where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def wsgi_app(registry: CollectorRegistry, warn: Callable[[str], None]) -> Callable:
    """prometheus_client's application; a scrape that fails is an HTTP 500
    with the one-line error, which goes to warn too (once while it repeats)."""
    metrics = make_wsgi_app(registry)
    last = [""]

    def app(environ, start_response):
        try:
            body = metrics(environ, start_response)
        except XdpctlError as exc:
            message = str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug: one line, never a traceback
            message = f"internal error: {type(exc).__name__}: {exc} (a bug in xdpctl)"
        else:
            last[0] = ""
            return body
        if message != last[0]:
            warn(f"a scrape failed: {message}")
            last[0] = message
        start_response("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"xdpctl: error: {message}\n".encode()]

    return app


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        """No line per request."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client that went away mid-response: nothing to say."""


def _unprivileged_port_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024


def _listen_error(exc: OSError, host: str, port: int) -> XdpctlError:
    at = where(host, port)
    if exc.errno == errno.EADDRINUSE:
        return XdpctlError(f"{at} is in use (another exporter?); stop what listens there "
                           f"(`ss -ltnp 'sport = :{port}'` shows it), or choose another port with --listen")
    if exc.errno == errno.EACCES:
        start = _unprivileged_port_start()
        return XdpctlError(f"listening on port {port} needs CAP_NET_BIND_SERVICE (ports below {start} are "
                           f"privileged); grant it, or choose a port from {start} up with --listen")
    if exc.errno == errno.EADDRNOTAVAIL:
        return BadInput(f"{host} is not an address of this machine (`ip address` lists them); "
                        "--listen takes one of them, 127.0.0.1 or 0.0.0.0")
    if exc.errno == errno.EAFNOSUPPORT:
        return BadInput(f"cannot listen on {at}: IPv6 is disabled here; listen on an IPv4 address")
    return KernelError(f"cannot listen on {at}: {exc.strerror or exc}")


def bind(host: str, port: int, app: Callable) -> WSGIServer:
    """A server listening on host:port (a literal address, as
    validate.listen_address returns it), not yet serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        (info, *_) = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0,
                                        socket.AI_NUMERICHOST | socket.AI_PASSIVE)
        server_class = type("_Listening", (_Server,), {"address_family": family})
        server = server_class(info[4], _Quiet)
    except socket.gaierror as exc:
        raise BadInput(f"cannot listen on {where(host, port)}: {exc.strerror}") from None
    except OSError as exc:
        raise _listen_error(exc, host, port) from None
    server.set_app(app)
    return server


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def run(app, listen: tuple[str, int], *, rule_metrics: bool, ready: Callable[[str], None],
        warn: Callable[[str], None]) -> None:
    """Serve xdpctl's metrics on listen until SIGTERM (which returns) or
    Ctrl-C (KeyboardInterrupt). ready(url) once it serves. Changes nothing
    on the machine: no pin, map, program, state or lock is touched."""
    privileges.require_bpf("exporting xdpctl's counters")
    host_ino = scrape.machine_netns_ino()  # before --netns moves this process
    own_ino = app.netns_ino  # enters --netns: the server listens there
    app.state.check()  # a state directory that is not xdpctl's: refused now, in one line
    scrape.links_here()  # netlink answers here, and the first scrape pays no import

    told: set[str] = set()

    def left_out(message: str) -> None:
        """One attachment that cannot be read leaves the others' metrics be;
        said once, not at every scrape."""
        if message not in told:
            told.add(message)
            warn(f"left out of the metrics: {message}")

    def read() -> list[Reading]:
        return scrape.read_all(app.state, rules=rule_metrics, host_ino=host_ino, own_ino=own_ino,
                               own_links=scrape.links_here, left_out=left_out)

    server = bind(*listen, wsgi_app(registry_for(read, rule_metrics), warn))
    # Ctrl-C and SIGTERM are blocked in every thread, the server's included
    # (threads inherit the mask), and taken by sigwait below: a signal the
    # kernel handed to a server thread would leave the main thread asleep.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    thread = threading.Thread(target=server.serve_forever, name="xdpctl-exporter", daemon=True)
    try:
        thread.start()
        ready(f"http://{where(*listen)}/metrics")
        received = signal.sigwait(STOP_SIGNALS)
    finally:
        if thread.is_alive():
            server.shutdown()
        server.server_close()
        thread.join(5)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if received == signal.SIGINT:
        raise KeyboardInterrupt  # exit 130, as every command on Ctrl-C
