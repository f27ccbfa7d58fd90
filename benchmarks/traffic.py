#!/usr/bin/env python3
"""Traffic through the veth lab, and the cost of xdpctl's own commands, each
against a baseline measured in the same run.

    sudo .venv/bin/python benchmarks/traffic.py [--frames N] [--scapy-frames N] [--rounds N] [--runs N] [--json]

On throw-away isolated labs (both veth ends in namespaces this run makes; no
frame reaches the machine's own namespace), every send bounded by a count:

1. generator: frames per second xdpctl's bulk sender (xdpctl/traffic/sender.py:
   frames built once, handed to the kernel by sendmmsg) pushes into a lab
   carrying the count-only program, against scapy's sendp() sending the same
   frame from the same namespace (scapy's own loop over a list, one socket;
   and a sendp() call per frame, as a script would write it). Every frame is
   checked to have been counted by the program at the far end.
2. drop vs pass: frames per second processed (sent, and counted by the
   program) through a lab carrying `attach --drop-non-ip` against a lab
   carrying the count-only program, for non-IP frames (ARP, LLDP, STP: the
   one drops them at XDP, the other passes them on to the kernel's stack) and,
   as a control, for IPv4/UDP frames that both pass.
3. stats: `xdpctl stats IFACE --json` as a fresh process against the bare
   interpreter start (`python -c pass`); in-process, report.stats() and the
   counter map read alone.
4. attach: `xdpctl attach IFACE` as a fresh process (BCC compile included)
   against `xdp-loader load` of a precompiled object (xdp-filter's
   xdpfilt_alw_all.o), when xdp-tools is installed.

Traffic sections run on one CPU (the sender and the softirq that processes
its frames share it; scapy's process inherits the pinning). Absolute times
and rates are this machine's; the ratios are the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import time

from common import PY, XDPCTL, run, state_root_as_found, summary
from xdpctl.datapath import contract, counters
from xdpctl.traffic import frames
from xdpctl.kernel import netlink
from xdpctl.traffic import lab as labs
from xdpctl.cli.app import App
from xdpctl.checks.bench import one_cpu
from xdpctl.observe.report import stats
from xdpctl.traffic.sender import Sender
from xdpctl.lifecycle.state import STATE_ROOT, State

XDP_LOADER_OBJECT = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_all.o"
COUNT_WAIT_S = 5.0

# Runs in the lab's peer namespace (`ip netns exec`): scapy's import and the
# packets' parsing are not timed, only sendp().
SCAPY_SENDER = r"""
import json, logging, sys, time
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.layers.l2 import Ether
from scapy.sendrecv import sendp
spec = json.load(sys.stdin)
built = [Ether(bytes.fromhex(h)) for h in spec["frames"]]
pkts = [built[i % len(built)] for i in range(spec["count"])]
start = time.perf_counter()
if spec["per_call"]:
    for p in pkts:
        sendp(p, iface=spec["iface"], verbose=False)
else:
    sendp(pkts, iface=spec["iface"], verbose=False)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


class Stand:
    """An isolated lab whose host end carries an xdpctl program."""

    def __init__(self, tag: str):
        self.lab = labs.up(tag + secrets.token_hex(3), isolated=True)
        self.ino = os.stat(f"{netlink.NETNS_RUN_DIR}/{self.lab.host_netns}").st_ino
        with netlink.Netlink(namespace=self.lab.host_netns) as nl:
            self.ifindex = nl.link(self.lab.host_if).ifindex

    @property
    def xdpctl(self) -> list[str]:
        return [*XDPCTL, "--netns", self.lab.host_netns]

    def attach(self, *options: str) -> float:
        return run([*self.xdpctl, "attach", self.lab.host_if, *options])[0]

    def detach(self) -> float:
        return run([*self.xdpctl, "detach", self.lab.host_if])[0]

    @property
    def pin(self) -> str:
        return State().attachment(self.ino, self.ifindex).pin(contract.PIN_COUNTERS)

    def counted(self) -> int:
        """Frames the program has seen, passed or dropped."""
        return sum(v["packets"] for per in counters.read(self.pin).values() for v in per.values())

    def close(self) -> None:
        labs.down(self.lab)
        shutil.rmtree(os.path.join(STATE_ROOT, f"ns{self.ino}"), ignore_errors=True)


def wait_counted(stand: Stand, before: int, count: int) -> tuple[int, float]:
    """The frames counted since `before`, once all `count` are (frames are
    counted in softirq context, possibly a moment after the send returns),
    and when that was."""
    deadline = time.perf_counter() + COUNT_WAIT_S
    while True:
        n = stand.counted() - before
        now = time.perf_counter()
        if n >= count or now > deadline:
            return n, now
        time.sleep(0.0002)


def push(stand: Stand, built: list[bytes], count: int) -> dict:
    """Send count frames with xdpctl's sender; rates by the sender's clock
    and up to the moment the program had counted them all."""
    before = stand.counted()
    with Sender(stand.lab.peer_if, stand.lab.netns) as sender:
        start = time.perf_counter()
        result = sender.send(built, count)
    counted, done = wait_counted(stand, before, count)
    return {"sent": result.sent, "counted": counted, "send_fps": result.sent / result.seconds,
            "processed_fps": counted / (done - start)}


def scapy_push(stand: Stand, built: list[bytes], count: int, per_call: bool) -> dict:
    before = stand.counted()
    spec = {"frames": [f.hex() for f in built], "count": count, "iface": stand.lab.peer_if, "per_call": per_call}
    _, out = run(["ip", "netns", "exec", stand.lab.netns, PY, "-c", SCAPY_SENDER], input=json.dumps(spec))
    seconds = json.loads(out)["seconds"]
    counted, _ = wait_counted(stand, before, count)
    return {"sent": count, "counted": counted, "send_fps": count / seconds}


def check_counted(label: str, samples: list[dict]) -> None:
    for s in samples:
        if s["counted"] != s["sent"]:
            raise SystemExit(f"{label}: {s['sent']} frames sent but {s['counted']} counted at the far end")


def median_of(samples: list[dict], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def generator(stand: Stand, args) -> dict:
    built = frames.build("udp-flood", stand.lab.endpoints())
    ours, theirs, per_call = [], [], []
    with one_cpu():
        for i in range(args.rounds):
            ours.append(push(stand, built, args.frames))
            theirs.append(scapy_push(stand, built, args.scapy_frames, per_call=False))
            if i == 0:  # slow (a socket per call): once is enough to show it
                per_call.append(scapy_push(stand, built, args.scapy_per_call_frames, per_call=True))
    for label, samples in (("xdpctl sender", ours), ("scapy sendp(list)", theirs), ("scapy sendp()", per_call)):
        check_counted(label, samples)
    fps = median_of(ours, "send_fps")
    scapy_fps = median_of(theirs, "send_fps")
    per_call_fps = median_of(per_call, "send_fps")
    return {
        "frame": f"IPv4/UDP, {len(built[0])} B (profile udp-flood), count-only program on the host end",
        "xdpctl_sender": {"frames": args.frames, "fps": round(fps),
                          "processed_fps": round(median_of(ours, "processed_fps"))},
        "scapy_sendp_list": {"frames": args.scapy_frames, "fps": round(scapy_fps)},
        "scapy_sendp_per_frame": {"frames": args.scapy_per_call_frames, "fps": round(per_call_fps)},
        # Per round, against the scapy run just after it; then the median.
        "ratio": round(statistics.median(o["send_fps"] / t["send_fps"] for o, t in zip(ours, theirs)), 1),
        "ratio_per_frame_calls": round(fps / per_call_fps, 1),
        "rounds": args.rounds,
        "every_frame_counted": True,
    }


def drop_vs_pass(passing: Stand, dropping: Stand, args) -> dict:
    profiles = {"non-ip (ARP, LLDP, STP)": "non-ip", "ipv4/udp (both pass; control)": "udp-flood"}
    out = {}
    with one_cpu():
        for label, profile in profiles.items():
            # Each lab gets frames addressed to its own host end: frames for
            # another MAC would be thrown away early by the stack, and look fast.
            mine = frames.build(profile, passing.lab.endpoints())
            theirs = frames.build(profile, dropping.lab.endpoints())
            p, d = [], []
            for _ in range(args.rounds):
                p.append(push(passing, mine, args.frames))
                d.append(push(dropping, theirs, args.frames))
            check_counted(label, p + d)
            out[label] = {
                "frames": args.frames,
                "count_only_fps": round(median_of(p, "processed_fps")),
                "drop_non_ip_fps": round(median_of(d, "processed_fps")),
                "ratio": round(statistics.median(b["processed_fps"] / a["processed_fps"] for a, b in zip(p, d)), 2),
            }
    return out


def stats_times(stand: Stand, args) -> dict:
    base = [run([PY, "-c", "pass"])[0] for _ in range(args.runs)]
    fresh = [run([*stand.xdpctl, "stats", stand.lab.host_if, "--json"])[0] for _ in range(args.runs)]
    in_process, map_read = [], []
    with netlink.in_netns(stand.lab.host_netns):
        app = App()
        try:
            stats(app, (stand.lab.host_if,))  # warm: imports, the netlink socket
            for _ in range(200):
                t = time.perf_counter()
                stats(app, (stand.lab.host_if,))
                in_process.append(time.perf_counter() - t)
        finally:
            app.close()
    for _ in range(1000):
        t = time.perf_counter()
        counters.read(stand.pin)
        map_read.append(time.perf_counter() - t)
    fresh_s, base_s = summary(fresh), summary(base)
    return {
        "python -c pass (baseline)": base_s,
        "xdpctl stats IFACE --json (fresh process)": fresh_s,
        "ratio_to_python_start": round(fresh_s["median_s"] / base_s["median_s"], 1),
        "in_process_report_stats_ms": round(statistics.median(in_process) * 1e3, 3),
        "in_process_counter_map_read_ms": round(statistics.median(map_read) * 1e3, 3),
    }


def attach_times(args) -> dict:
    stand = Stand("tfa")
    try:
        attach, loader = [], []
        have_loader = shutil.which("xdp-loader") and os.path.exists(XDP_LOADER_OBJECT)
        # xdp-loader runs in a private mount namespace with a bpffs of its own,
        # so that nothing it pins lands on the machine's bpffs.
        enter = f"nsenter --net={netlink.NETNS_RUN_DIR}/{stand.lab.host_netns}"
        script = (f"mount -t bpf bpf /sys/fs/bpf && {enter} xdp-loader load -m native "
                  f"{stand.lab.host_if} {XDP_LOADER_OBJECT}")
        for _ in range(args.attach_runs):
            attach.append(stand.attach())
            stand.detach()
            if have_loader:
                loader.append(run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])[0])
                run(["ip", "-n", stand.lab.host_netns, "link", "set", "dev", stand.lab.host_if, "xdp", "off"])
    finally:
        stand.close()
    out = {"xdpctl attach IFACE (fresh process, compile included)": summary(attach)}
    if loader:
        out["xdp-loader load of a precompiled object (baseline)"] = summary(loader)
        out["ratio"] = round(out["xdpctl attach IFACE (fresh process, compile included)"]["median_s"]
                             / out["xdp-loader load of a precompiled object (baseline)"]["median_s"], 1)
    else:
        out["baseline"] = "skipped: xdp-loader or its object is not installed"
    return out


def print_report(r: dict) -> None:
    g = r["generator"]
    print(f"1. generator ({g['frame']}; median of {g['rounds']} rounds)")
    for name, key, note in (("xdpctl sender", "xdpctl_sender", ""), ("scapy sendp(list)", "scapy_sendp_list", ""),
                            ("scapy sendp() a frame", "scapy_sendp_per_frame", ", one round")):
        print(f"   {name:<21} {g[key]['fps']:>12,} frames/s  ({g[key]['frames']:,} frames{note})")
    print(f"   ratio: {g['ratio']}x scapy's sendp(list), {g['ratio_per_frame_calls']}x a sendp() call per frame")
    print(f"2. processed through the lab: --drop-non-ip against the count-only program "
          f"(medians of {g['rounds']} rounds)")
    for label, row in r["drop_vs_pass"].items():
        print(f"   {label:<30} count-only {row['count_only_fps']:>10,}/s  drop-non-ip {row['drop_non_ip_fps']:>10,}/s"
              f"  ratio {row['ratio']}")
    s = r["stats"]
    print("3. stats (this machine's times)")
    for name in ("python -c pass (baseline)", "xdpctl stats IFACE --json (fresh process)"):
        print(f"   {name:<44} median {s[name]['median_s']:.3f} s  ({s[name]['runs']} runs)")
    print(f"   ratio to the interpreter's start: {s['ratio_to_python_start']}x")
    print(f"   in process: report.stats() {s['in_process_report_stats_ms']} ms, "
          f"counter map read {s['in_process_counter_map_read_ms']} ms")
    a = r["attach"]
    print("4. attach (this machine's times)")
    for name, v in a.items():
        if isinstance(v, dict):
            print(f"   {name:<56} median {v['median_s']:.3f} s  ({v['runs']} runs)")
    print(f"   ratio: {a['ratio']}x" if "ratio" in a else f"   {a['baseline']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100_000, help="frames per xdpctl send (default 100,000)")
    parser.add_argument("--scapy-frames", type=int, default=5_000, help="frames per scapy sendp(list) (default 5,000)")
    parser.add_argument("--scapy-per-call-frames", type=int, default=200,
                        help="frames sent one sendp() call each (default 200)")
    parser.add_argument("--rounds", type=int, default=7, help="alternations of the contenders (default 7)")
    parser.add_argument("--runs", type=int, default=20, help="fresh `stats` processes (default 20)")
    parser.add_argument("--attach-runs", type=int, default=3, help="fresh `attach` processes (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    for name in ("frames", "scapy_frames", "scapy_per_call_frames", "rounds", "runs", "attach_runs"):
        if not 1 <= getattr(args, name) <= 10_000_000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 10,000,000")

    results: dict = {"machine": f"{os.cpu_count()} CPUs, Linux {os.uname().release}",
                     "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    stands: list[Stand] = []
    with state_root_as_found():
        try:
            passing = Stand("tfp")
            stands.append(passing)
            dropping = Stand("tfd")
            stands.append(dropping)
            passing.attach()
            dropping.attach("--drop-non-ip")
            results["generator"] = generator(passing, args)
            results["drop_vs_pass"] = drop_vs_pass(passing, dropping, args)
            results["stats"] = stats_times(passing, args)
        finally:
            for stand in stands:
                stand.close()
        results["attach"] = attach_times(args)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_report(results)


if __name__ == "__main__":
    main()
