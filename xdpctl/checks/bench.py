"""bench: the per-packet cost of xdpctl's program against the empty XDP
program, both run through BPF_PROG_TEST_RUN on the same frames, alternately,
in the same run. Absolute nanoseconds are noisy on shared machines; the ratio
of two programs measured side by side is what the figures rest on.

Two details make the figures precise:
- The kernel reports a test run's cost in whole nanoseconds, too coarse for a
  6 ns program; the wall-clock time of each BPF_PROG_TEST_RUN call is used.
- With repeat > 1 the kernel puts the program in the XDP dispatcher for the
  call and takes it out after, each time waiting for an RCU grace period
  (milliseconds, in scheduler ticks). While a program is attached to an
  interface in native mode it stays in the dispatcher, so the call does no
  such wait. Each contender is therefore attached in turn to a throw-away
  veth in an isolated lab while it is measured (one at a time, so each sees
  the same dispatcher), and the calls time the program alone.

The program measured is an unpinned twin of the one on the interface (same
source, same -D flags), so live counters never see benchmark frames.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import statistics
import time
from dataclasses import dataclass
from typing import Iterator

from ..traffic import lab as labs
from ..datapath import contract
from ..kernel import libbpf, netlink
from ..datapath.program import FilterOptions, empty_program, filter_program
from ..lifecycle.state import scratch_dir

DEFAULT_REPEAT = 2_000_000
DEFAULT_ROUNDS = 12


@dataclass(frozen=True)
class Contender:
    """A loaded program to time, and how to name it in the report. held:
    attach it to the stand while it is timed (xdp-filter is attached to its
    own lab already)."""

    name: str
    fd: int
    held: bool = True


def bench_frames() -> dict[str, bytes]:
    """The frame set every ratio is reported for."""
    from ..traffic import frames
    from ..traffic.endpoints import Endpoints

    ep = Endpoints("02:00:00:00:00:02", "02:00:00:00:00:01", "198.18.0.2", "198.18.0.1",
                   "fd78:6470::2", "fd78:6470::1")
    mix = frames.build("mix", ep)
    return {
        "ipv4/udp": mix[1],
        "vlan ipv4/udp": mix[14],
        "ipv6/tcp": mix[7],
        "arp": mix[17],
    }


@contextlib.contextmanager
def one_cpu() -> Iterator[None]:
    """Keep the benchmark on one CPU: test runs execute where they are called."""
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def per_packet_ns(fd: int, frame: bytes, repeat: int) -> float:
    """Wall-clock time of one BPF_PROG_TEST_RUN call, per run."""
    start = time.perf_counter_ns()
    libbpf.prog_test_run(fd, frame, repeat)
    return (time.perf_counter_ns() - start) / repeat


class Stand:
    """A veth in an isolated lab that holds the contender being measured."""

    def __init__(self) -> None:
        self.lab = labs.up("bn" + secrets.token_hex(3), isolated=True)
        self.nl = netlink.Netlink(namespace=self.lab.host_netns)
        self.link = self.nl.link(self.lab.host_if)

    def hold(self, fd: int) -> None:
        self.nl.xdp_set(self.link, fd, "native")

    def close(self) -> None:
        self.nl.close()
        labs.down(self.lab)


def measure(baseline: Contender, others: list[Contender], frames: dict[str, bytes],
            repeat: int = DEFAULT_REPEAT, rounds: int = DEFAULT_ROUNDS, stand: Stand | None = None,
            pairs: tuple[tuple[str, str], ...] = ()) -> list[dict]:
    """Round after round, hold each program in turn and time it on every
    frame. The headline ratio is the median, over rounds, of each round's
    ratio to the baseline measured just before it (drift cancels within a
    round); the ratio of the best rounds is reported beside it. pairs:
    (name, reference) of two contenders, reported as <name>_vs_<reference>,
    the same median of per-round ratios."""
    contenders = [baseline, *others]
    times = {(c.name, f): [] for c in contenders for f in frames}
    with one_cpu():
        for _ in range(rounds):
            for c in contenders:
                if stand is not None and c.held:
                    stand.hold(c.fd)
                for label, frame in frames.items():
                    times[(c.name, label)].append(per_packet_ns(c.fd, frame, repeat))
    rows = []
    for label, frame in frames.items():
        base = times[(baseline.name, label)]
        row = {"frame": label, "bytes": len(frame), f"{baseline.name}_ns": round(statistics.median(base), 3)}
        for c in others:
            mine = times[(c.name, label)]
            row[f"{c.name}_ns"] = round(statistics.median(mine), 3)
            row[f"{c.name}_ratio"] = round(statistics.median(m / b for m, b in zip(mine, base)), 3)
            row[f"{c.name}_ratio_best"] = round(min(mine) / min(base), 3)
        for name, ref in pairs:
            mine, theirs = times[(name, label)], times[(ref, label)]
            row[f"{name}_vs_{ref}"] = round(statistics.median(m / r for m, r in zip(mine, theirs)), 3)
        rows.append(row)
    return rows


def bench(options: FilterOptions, source: str, repeat: int = DEFAULT_REPEAT, rounds: int = DEFAULT_ROUNDS,
          with_xdp_filter: bool = False, rule_sets: tuple[int, ...] = (), rules: list | None = None) -> dict:
    """Build the empty program and xdpctl's program with options and rules
    (or, for each size in rule_sets, with that many synthetic mixed rules);
    time them."""
    from ..kernel.compiler import compile_and_load

    loaded = []
    stand = xdp_filter = None
    with contextlib.ExitStack() as stack:
        try:
            loaded.append(compile_and_load(empty_program()))
            contenders = []
            if not rule_sets:
                if rules:
                    loaded.append(_with_rules(options, rules, stack.enter_context(scratch_dir("bench"))))
                else:
                    loaded.append(compile_and_load(filter_program(options, None)))
                contenders.append(Contender("xdpctl", loaded[-1].prog_fd))
            for n in rule_sets:
                from ..rules import synthetic

                scratch = stack.enter_context(scratch_dir("bench"))
                loaded.append(_with_rules(options, synthetic.mixed(n), scratch))
                contenders.append(Contender(f"xdpctl_{n}", loaded[-1].prog_fd))
            stand = Stand()
            if with_xdp_filter:
                from .xdp_filter import XdpFilter

                xdp_filter = XdpFilter.start()
                contenders.append(Contender("xdp_filter", xdp_filter.prog_fd, held=False))
            rows = measure(Contender("empty", loaded[0].prog_fd), contenders, bench_frames(), repeat, rounds, stand)
        finally:
            if stand is not None:
                stand.close()
            if xdp_filter is not None:
                xdp_filter.stop()
            for item in loaded:
                item.close()
    report = {
        "program": {"source": source, "options": options.describe()},
        "baseline": "the empty XDP program (return XDP_PASS)",
        "method": "BPF_PROG_TEST_RUN; wall clock per run; each program held in the XDP dispatcher "
                  "while timed; programs alternated on one CPU; ns are medians of rounds; ratio is the "
                  "median of per-round ratios (ratio_best: best round against best round)",
        "repeat": repeat,
        "rounds": rounds,
        "frames": rows,
    }
    if rule_sets:
        report["rule_sets"] = {str(n): "synthetic mixed rules (xdpctl/rules/synthetic.py): IPv4/IPv6 prefixes, "
                               "protocols, port ranges, ICMP types, MACs; the frames match only the last"
                               for n in rule_sets}
        if len(rule_sets) > 1:
            lo, hi = min(rule_sets), max(rule_sets)
            for row in rows:
                row[f"growth_{lo}_to_{hi}"] = round(row[f"xdpctl_{hi}_ns"] / row[f"xdpctl_{lo}_ns"], 3)
    if xdp_filter is not None:
        report["xdp_filter"] = xdp_filter.describe()
    return report


def _report(source: str, options: FilterOptions, baseline: str, repeat: int, rounds: int, rows: list) -> dict:
    return {
        "program": {"source": source, "options": options.describe()},
        "baseline": baseline,
        "method": "BPF_PROG_TEST_RUN; wall clock per run; XDP programs held in the XDP dispatcher while "
                  "timed; programs alternated on one CPU; ns are medians of rounds; ratio is the median of "
                  "per-round ratios (ratio_best: best round against best round)",
        "repeat": repeat,
        "rounds": rounds,
        "frames": rows,
    }


def _flow_keys(frames: dict[str, bytes]) -> list[bytes]:
    """The flow each frame would answer (its reversed tuple), for the frames
    that have one: filled into the table so that --established finds them."""
    from ..datapath import classify
    from ..datapath.flow_table import pack_key

    keys = []
    for frame in frames.values():
        p = classify.parse(frame)
        if p.sport is None or p.ipv is None:
            continue
        width = 4 if p.ipv == 4 else 16
        addr = lambda n: str(ipaddress.ip_address(n.to_bytes(width, "big")))  # noqa: E731
        keys.append(pack_key(p.ipv, p.l4proto, addr(p.dst), p.dport, addr(p.src), p.sport))
    return keys


def bench_established(options: FilterOptions, repeat: int = DEFAULT_REPEAT, rounds: int = DEFAULT_ROUNDS) -> dict:
    """Ingress with and without --established: the same rules (a `pass
    --proto tcp --dport 22` rule), and then with `pass --established` first,
    its table holding the flows the IPv4/UDP and IPv6/TCP frames answer (the
    lookup finds them: the common case, a reply). The ratio of the two is
    the cost of the flow lookup."""
    from ..datapath.flow_table import FlowSettings
    from ..kernel.compiler import compile_and_load
    from ..lifecycle import egress
    from ..rules.model import ACTIONS, Rule, parse_match

    ssh = Rule(ACTIONS["pass"], parse_match({"proto": "tcp", "dport": "22"}), 1000, False, 1, 2, 0)
    est = Rule(ACTIONS["pass"], parse_match({"established": True}), 1000, False, 2, 1, 1)
    frames = bench_frames()
    loaded, stand = [], None
    with contextlib.ExitStack() as stack:
        try:
            loaded.append(compile_and_load(empty_program()))
            loaded.append(_with_rules(options, [ssh], stack.enter_context(scratch_dir("bench"))))
            flows_dir = stack.enter_context(scratch_dir("bench"))
            egress.ensure_table(flows_dir, FlowSettings())
            loaded.append(_with_rules(options, [est, ssh], flows_dir))
            now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            with libbpf.opened(os.path.join(flows_dir, contract.PIN_FLOWS)) as fd:
                for key in _flow_keys(frames):
                    libbpf.map_update(fd, key, contract.FLOW.pack(now, now, 0, 0, contract.FLOW_UDP, 0))
            with libbpf.opened(os.path.join(flows_dir, contract.PIN_FLOW_CONFIG)) as fd:
                # Timeouts no run outlasts: the entries stay live.
                libbpf.map_update(fd, b"\0\0\0\0", FlowSettings((1 << 30,) * 4).pack())
            stand = Stand()
            rows = measure(Contender("empty", loaded[0].prog_fd),
                           [Contender("rules", loaded[1].prog_fd), Contender("established", loaded[2].prog_fd)],
                           frames, repeat, rounds, stand)
        finally:
            if stand is not None:
                stand.close()
            for item in loaded:
                item.close()
    for row in rows:
        row["established_over_rules"] = round(row["established_ns"] / row["rules_ns"], 3)
    report = _report("a `pass --proto tcp --dport 22` rule (rules), and with `pass --established` before it "
                     "(established)", options, "the empty XDP program (return XDP_PASS)", repeat, rounds, rows)
    report["flows"] = "the IPv4/UDP, VLAN IPv4/UDP and IPv6/TCP frames answer flows in the table; ARP has no flow"
    return report


def bench_limits(options: FilterOptions, repeat: int = DEFAULT_REPEAT, rounds: int = DEFAULT_ROUNDS) -> dict:
    """A limited rule against a plain one with the same matches (none: it
    decides every frame). `limited` finds the frame's key in its table (the
    frame goes over its bucket, so the rule decides it); `spoofed` never
    does: its key is not in the table and the rule's ceiling is spent, the
    path of every frame of a flood from new sources while the ceiling holds."""
    from ..kernel.compiler import compile_and_load
    from ..rules import engine, limit_tables
    from ..rules.limits import NS
    from ..datapath.layout import Layout
    from ..rules.tables import build
    from ..rules.model import ACTIONS, Rule, parse_limit, parse_match

    everything = parse_match({})
    plain = Rule(ACTIONS["drop"], everything, 1000, False, 1, 1, 0)
    limited = Rule(ACTIONS["drop"], everything, 1000, False, 1, 1, 0,
                   limit=parse_limit({"over": "1/h", "burst": "1"}, everything))
    frames = bench_frames()
    with contextlib.ExitStack() as stack:  # closes, last first: the stand, the programs, their pin dirs
        def held(thing):
            return stack.enter_context(contextlib.closing(thing))

        empty = held(compile_and_load(empty_program()))
        programs = {"plain": held(_with_rules(options, [plain], stack.enter_context(scratch_dir("bench"))))}
        for case in ("limited", "spoofed"):
            directory = stack.enter_context(scratch_dir("bench"))
            programs[case] = held(_with_rules(options, [limited], directory))
            layout = Layout().grown(build([limited]).needs)
            buckets = os.path.join(directory, layout.pin_buckets())
            limit_tables.sync(buckets, [limited], {limited.slot})
            engine.write_limits(os.path.join(directory, layout.pin_limits()), [limited])
            if case == "spoofed":
                # The ceiling's bucket, empty: every frame's key is refused entry.
                key = contract.LIMIT_KEY.pack(0, contract.LIMIT_FAMILY_CEILING, 0, 0, 0, 0, 0, b"", b"")
                now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + 3600 * NS
                limit_tables.update(buckets, limited.slot, key, contract.BUCKET.pack(0, now))
        rows = measure(Contender("empty", empty.prog_fd), [Contender(n, p.prog_fd) for n, p in programs.items()],
                       frames, repeat, rounds, held(Stand()))
    for row in rows:
        row["limited_over_plain"] = round(row["limited_ns"] / row["plain_ns"], 3)
        row["spoofed_over_plain"] = round(row["spoofed_ns"] / row["plain_ns"], 3)
    return _report("a `drop` rule deciding every frame (plain), the same with `--over 1/h --burst 1`, its key "
                   "in the table (limited) and not, the ceiling spent (spoofed)", options,
                   "the empty XDP program (return XDP_PASS)", repeat, rounds, rows)


def bench_egress(repeat: int = DEFAULT_REPEAT, rounds: int = DEFAULT_ROUNDS) -> dict:
    """The egress program of --established against the empty TC program, on
    the same frames as sent by the host: each run records (or refreshes) the
    frame's flow in the table."""
    from ..datapath.program import egress_program, empty_tc_program
    from ..kernel.compiler import compile_and_load
    from ..lifecycle import egress

    loaded = []
    with contextlib.ExitStack() as stack:
        try:
            directory = stack.enter_context(scratch_dir("bench"))
            from ..datapath.flow_table import FlowSettings

            egress.ensure_table(directory, FlowSettings())
            loaded.append(compile_and_load(empty_tc_program()))
            loaded.append(compile_and_load(egress_program(directory)))
            rows = measure(Contender("empty", loaded[0].prog_fd, held=False),
                           [Contender("egress", loaded[1].prog_fd, held=False)], bench_frames(), repeat, rounds)
        finally:
            for item in loaded:
                item.close()
    return _report("the TC egress program of --established (bpf/egress_kern.c)", FilterOptions(),
                   "the empty TC program (return TC_ACT_UNSPEC)", repeat, rounds, rows)


def _with_rules(options: FilterOptions, rules: list, directory: str):
    """xdpctl's program with rules, its tables filled."""
    from ..rules import engine
    from ..kernel.compiler import compile_and_load
    from ..datapath.layout import Layout
    from ..rules.tables import build

    from ..lifecycle import steering

    n = len(rules)
    built = build(rules)
    layout = Layout().grown(built.needs)
    tables = engine.create_tables(directory, layout)
    steering.prepare(directory, layout)  # the devmap and cpumap of redirect rules
    loaded = compile_and_load(filter_program(options, directory, layout))
    engine.write_tables(tables, 0, built, layout)
    _fill_steering(directory, rules, layout)
    engine.write_config(os.path.join(directory, contract.PIN_CONFIG), 0, len(rules), n + 1, n + 1)
    return loaded


def _fill_steering(directory: str, rules: list, layout) -> None:
    """Generation 0's devmap entries and the CPUs' queues, as a change writes
    them; a target that is not an interface here is left out (its frames
    then take the aborted path)."""
    import struct

    from ..rules import actions

    key = struct.Struct("<I")
    if layout.actions & contract.ACTS_REDIRECT:
        with libbpf.opened(os.path.join(directory, contract.PIN_DEVMAP)) as fd:
            for group, offset in actions.devmap_offsets(rules).items():
                for i, t in enumerate(group):
                    with contextlib.suppress(OSError):
                        libbpf.map_update(fd, key.pack(offset + i), key.pack(t.ifindex))
    if layout.actions & contract.ACTS_CPU:
        with libbpf.opened(os.path.join(directory, contract.PIN_CPUMAP)) as fd:
            for r in rules:
                if r.action == contract.ACTION_REDIRECT_CPU:
                    libbpf.map_update(fd, key.pack(r.steer.cpu), key.pack(r.steer.queue_size))


# --- the actions -------------------------------------------------------------------

# One rule that decides every frame (it has no match), with each action; the
# redirects send to the loopback interface (nothing is sent: a test run only
# returns the verdict, after the devmap or cpumap lookup).
ACTION_CONTENDERS = ("drop", "redirect", "redirect_x3", "redirect_cpu", "tx")
LOOPBACK = 1


def _action_rule(name: str):
    from ..rules.actions import NO_STEER, Steer, Target
    from ..rules.model import Match, Rule

    code, steer = {
        "drop": (contract.ACTION_DROP, NO_STEER),
        "redirect": (contract.ACTION_REDIRECT, Steer(to=(Target("lo", LOOPBACK),))),
        "redirect_x3": (contract.ACTION_REDIRECT, Steer(to=tuple(Target(f"lo{i}", LOOPBACK) for i in range(3)))),
        "redirect_cpu": (contract.ACTION_REDIRECT_CPU, Steer(cpu=0)),
        "tx": (contract.ACTION_TX, NO_STEER),
    }[name]
    return Rule(code, Match(), id=1, seq=1, slot=0, steer=steer)


def _with_action(options: FilterOptions, name: str, directory: str):
    """xdpctl's program with one rule of that action, its devmap and cpumap
    entries written as a change would write them."""
    return _with_rules(options, [_action_rule(name)], directory)


def bench_actions(options: FilterOptions, repeat: int = DEFAULT_REPEAT, rounds: int = DEFAULT_ROUNDS) -> dict:
    """The empty program, xdpctl's program without rules, and xdpctl's
    program with one rule that decides every frame, for each action; each
    action's cost is also given against the drop rule's."""
    from ..kernel.compiler import compile_and_load

    loaded = []
    stand = None
    with contextlib.ExitStack() as stack:
        try:
            loaded.append(compile_and_load(empty_program()))
            loaded.append(compile_and_load(filter_program(options, None)))
            contenders = [Contender("no_rules", loaded[-1].prog_fd)]
            for name in ACTION_CONTENDERS:
                loaded.append(_with_action(options, name, stack.enter_context(scratch_dir("bench"))))
                contenders.append(Contender(name, loaded[-1].prog_fd))
            stand = Stand()
            pairs = tuple((name, "drop") for name in ACTION_CONTENDERS if name != "drop")
            rows = measure(Contender("empty", loaded[0].prog_fd), contenders, bench_frames(), repeat, rounds, stand,
                           pairs)
        finally:
            if stand is not None:
                stand.close()
            for item in loaded:
                item.close()
    return {
        "program": {"source": "one rule deciding every frame, by action", "options": options.describe()},
        "baseline": "the empty XDP program (return XDP_PASS)",
        "method": "BPF_PROG_TEST_RUN; wall clock per run; each program held in the XDP dispatcher while timed; "
                  "programs alternated on one CPU; ns are medians of rounds; ratio is the median of per-round "
                  "ratios; <action>_vs_drop: the same, against the drop rule. Redirects go to the loopback "
                  "interface's devmap entry and CPU 0's cpumap entry; a test run returns the verdict and sends "
                  "nothing",
        "repeat": repeat,
        "rounds": rounds,
        "actions": list(ACTION_CONTENDERS),
        "frames": rows,
    }
