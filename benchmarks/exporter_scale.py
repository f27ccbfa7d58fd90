#!/usr/bin/env python3
"""The exporter at scale: one scrape of N interfaces with M rules each
(default 10 x 10,000).

    sudo .venv/bin/python benchmarks/exporter_scale.py [--interfaces 10] [--rules 10000] [--runs 7] [--json]

N throw-away lab interfaces (host ends in this namespace; no traffic is
sent) carry M synthetic mixed rules each, from one `xdpctl apply`. Then,
each timed R times:
- a scrape in process: the collector reading every pin, and
  prometheus_client writing the exposition (also split into the two);
- the same with --no-rule-metrics;
- a scrape over HTTP of a running `xdpctl exporter` on loopback, what
  Prometheus waits for;
- for scale, `stats --json` of the same interfaces: in process
  (observe.report.stats, which also decodes and describes every rule) and as
  a whole command.

The exporter reads every attachment on the machine, so other xdpctl
attachments present count too: the report says how many interfaces and
samples a scrape served.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from common import PY, XDPCTL, print_table, run, state_root_as_found, summary
from xdpctl import safe_files
from xdpctl.cli.app import App
from xdpctl.observe import exporter, report, scrape
from xdpctl.rules import config_file, synthetic
from xdpctl.traffic import lab as labs


def timed(fn, runs: int) -> tuple[dict, object]:
    samples, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        samples.append(time.perf_counter() - start)
    return summary(samples), out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_exporter():
    port = free_port()
    proc = subprocess.Popen([*XDPCTL, "exporter", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr.readline().startswith("serving"), "the exporter did not start"
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interfaces", type=int, default=10)
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from prometheus_client import generate_latest  # the benchmark's own use, outside the package

    results: dict[str, dict] = {}
    facts: dict[str, object] = {}
    with state_root_as_found(), contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        made = []
        for _ in range(args.interfaces):
            lab = labs.up("es" + secrets.token_hex(3))
            stack.callback(labs.down, lab)
            made.append(lab)
        ifnames = tuple(lab.host_if for lab in made)
        rules = synthetic.mixed(args.rules)
        path = os.path.join(tmp, "scale.toml")
        safe_files.write(path, config_file.dump([(name, "native", "allow", False, rules) for name in ifnames]))
        facts["apply_s"] = round(run([*XDPCTL, "apply", path])[0], 2)

        app = App()
        host_ino = scrape.machine_netns_ino()

        def read(rule_metrics: bool = True):
            return scrape.read_all(app.state, rules=rule_metrics, host_ino=host_ino, own_ino=app.netns_ino,
                                   own_links=scrape.links_here)

        readings = read()
        ours = [r for r in readings if r.interface in ifnames]
        assert len(ours) == args.interfaces and all(len(r.rules) == args.rules for r in ours), \
            "the rule sets did not load whole"
        text = generate_latest(exporter.registry_for(read))
        facts.update(interfaces_read=len(readings), rules_read=sum(len(r.rules) for r in readings),
                      samples=sum(1 for line in text.splitlines() if line and not line.startswith(b"#")),
                      exposition_bytes=len(text))

        name = f"scrape in process ({args.interfaces} x {args.rules:,} rules)"
        results[name], _ = timed(lambda: generate_latest(exporter.registry_for(read)), args.runs)
        results["  of which: reading the pins"], _ = timed(read, args.runs)
        results["  of which: the exposition"], _ = timed(
            lambda: generate_latest(exporter.registry_for(lambda: readings)), args.runs)
        results["scrape in process, --no-rule-metrics"], _ = timed(
            lambda: generate_latest(exporter.registry_for(lambda: read(False), rule_metrics=False)), args.runs)
        with running_exporter() as url:
            get(url)  # the first scrape imports pyroute2 for the links
            results["scrape over HTTP (xdpctl exporter)"], body = timed(lambda: get(url), args.runs)
            facts["http_bytes"] = len(body)
        results["stats --json in process (report.stats)"], _ = timed(lambda: report.stats(app, ifnames), args.runs)
        results["xdpctl stats --json (whole command)"] = summary(
            [run([*XDPCTL, "stats", "--json", *ifnames])[0] for _ in range(args.runs)])
        results["python -c pass"] = summary([run([PY, "-c", "pass"])[0] for _ in range(args.runs)])
        app.close()
        for lab in made:
            run([*XDPCTL, "detach", lab.host_if])

    scrape_s = results[f"scrape in process ({args.interfaces} x {args.rules:,} rules)"]["median_s"]
    facts["stats_in_process_over_scrape"] = round(
        results["stats --json in process (report.stats)"]["median_s"] / scrape_s, 2)
    if args.json:
        print(json.dumps({"results": results, "facts": facts}, indent=2))
        return
    print_table(results, "step")
    print()
    for key, value in facts.items():
        print(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")


if __name__ == "__main__":
    main()
