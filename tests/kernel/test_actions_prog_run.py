"""The actions beyond pass and drop through BPF_PROG_TEST_RUN (no veth): for
random rule sets where rules redirect out of interfaces (--to, one to
several targets), redirect to a CPU, send back (tx), pass or drop, every
frame gets the XDP verdict the rules and the maps say, and is counted under
exactly that verdict in its class:

- redirect --to: XDP_REDIRECT when the devmap entry the flow hash picks
  (xdpctl/datapath/flow_hash.py, an independent reading of the C) holds an
  interface, XDP_ABORTED when it is empty (a target gone);
- redirect --cpu: XDP_REDIRECT when the CPU's cpumap entry exists, else
  XDP_ABORTED;
- tx: XDP_TX, the frame out with its MACs swapped;
- pass, drop, and the policy: as ever.

The devmap entries present are chosen at random, so that a frame whose hash
picks another target than the oracle says would come out with the other
verdict."""

from __future__ import annotations

import dataclasses
import random
import struct

import pytest

from rulegen import FRAMES, random_rules
from xdpctl.datapath import classify, contract, counters, flow_hash
from xdpctl.datapath.layout import Layout
from xdpctl.datapath.program import FilterOptions, filter_program
from xdpctl.kernel import libbpf
from xdpctl.kernel.compiler import compile_and_load
from xdpctl.lifecycle import steering
from xdpctl.lifecycle.state import scratch_dir
from xdpctl.rules import actions, engine
from xdpctl.rules.actions import Steer, Target
from xdpctl.rules.model import decide
from xdpctl.rules.tables import build

pytestmark = pytest.mark.kernel

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
VERDICT_OF = {XDP_ABORTED: "aborted", XDP_DROP: "drop", XDP_PASS: "pass", XDP_TX: "tx", XDP_REDIRECT: "redirect"}
LO = 1  # the devmap needs an interface of this namespace: any will do, nothing is sent
KEY = struct.Struct("<I")


def steering_rules(rng: random.Random, n: int, cpus: int) -> list:
    """Random rules (tests/rulegen.py) whose actions are spread over all five."""
    out = []
    for r in random_rules(rng, n):
        kind = rng.choice(["pass", "drop", "to", "to", "cpu", "tx"])
        if kind == "to":
            k = rng.choice([1, 2, 3, 5, 64])
            group = rng.choice([0, 1])  # rules share target lists, or not
            steer = Steer(to=tuple(Target(f"g{group}t{i}", 1000 + 100 * group + i) for i in range(k)))
            r = dataclasses.replace(r, action=contract.ACTION_REDIRECT, steer=steer)
        elif kind == "cpu":
            r = dataclasses.replace(r, action=contract.ACTION_REDIRECT_CPU, steer=Steer(cpu=rng.randrange(cpus)))
        elif kind == "tx":
            r = dataclasses.replace(r, action=contract.ACTION_TX)
        out.append(r)
    return out


def run_actions(rules, frames: list[bytes], options: FilterOptions, gen: int, rng: random.Random) -> None:
    built = build(rules)
    layout = Layout().grown(built.needs)
    assert layout.actions == actions.acts(rules)
    with scratch_dir("test") as d:
        tables = engine.create_tables(d, layout)
        steering.prepare(d, layout)
        loaded = compile_and_load(filter_program(options, d, layout))
        try:
            engine.write_tables(tables, gen, built, layout)
            engine.write_config(f"{d}/{contract.PIN_CONFIG}", gen, len(rules), 1, 1)
            # The devmap: each target of gen's part present or not, at random.
            present = set()
            if layout.actions & contract.ACTS_REDIRECT:
                with libbpf.opened(f"{d}/{contract.PIN_DEVMAP}") as fd:
                    for group, offset in built.devmap.items():
                        for i in range(len(group)):
                            if rng.random() < 0.6:
                                key = gen * contract.DEVMAP_GEN + offset + i
                                libbpf.map_update(fd, KEY.pack(key), KEY.pack(LO))
                                present.add(key)
            cpus_there = set()
            if layout.actions & contract.ACTS_CPU:
                with libbpf.opened(f"{d}/{contract.PIN_CPUMAP}") as fd:
                    for cpu in range(libbpf.possible_cpus()):
                        if rng.random() < 0.5:
                            libbpf.map_update(fd, KEY.pack(cpu), KEY.pack(64))
                            cpus_there.add(cpu)

            want_counts = counters.empty()
            seen = {v: 0 for v in VERDICT_OF}
            for frame in frames:
                p = classify.parse(frame)
                winner = None if options.drop_non_ip and not p.is_ip else decide(rules, p)
                out = frame
                if options.drop_non_ip and not p.is_ip:
                    want = XDP_DROP
                elif winner is None:
                    want = XDP_DROP if options.policy_deny else XDP_PASS
                elif winner.action == contract.ACTION_REDIRECT:
                    pick = flow_hash.pick(frame, len(winner.steer.to))
                    key = gen * contract.DEVMAP_GEN + built.devmap[winner.steer.to] + pick
                    want = XDP_REDIRECT if key in present else XDP_ABORTED
                elif winner.action == contract.ACTION_REDIRECT_CPU:
                    want = XDP_REDIRECT if winner.steer.cpu in cpus_there else XDP_ABORTED
                elif winner.action == contract.ACTION_TX:
                    want, out = XDP_TX, frame[6:12] + frame[0:6] + frame[12:]
                else:
                    want = XDP_DROP if winner.action == contract.ACTION_DROP else XDP_PASS
                got = libbpf.prog_test_run(loaded.prog_fd, frame)
                assert got.retval == want, (frame.hex(), winner)
                assert got.data_out == out, frame.hex()
                c = want_counts[p.cls][VERDICT_OF[want]]
                c["packets"] += 1
                c["bytes"] += len(frame)
                seen[want] += 1
            assert counters.read(f"{d}/{contract.PIN_COUNTERS}") == want_counts
            return seen
        finally:
            loaded.close()


@pytest.mark.parametrize("seed,n", [
    pytest.param(1, 5, marks=pytest.mark.matrix), (2, 20), (3, 60), (4, 150), pytest.param(5, 400, marks=pytest.mark.matrix),
])
def test_random_steering_rule_sets(seed, n):
    rng = random.Random(3000 + seed)
    seen = run_actions(steering_rules(rng, n, libbpf.possible_cpus()), FRAMES, FilterOptions(), seed & 1, rng)
    assert sum(seen.values()) == len(FRAMES)


@pytest.mark.matrix
def test_every_verdict_occurs_and_the_options_come_first():
    """Over the seeds above the five verdicts all occur; with --drop-non-ip
    and a deny policy the options still come first."""
    seen = {v: 0 for v in VERDICT_OF}
    for seed in range(6):
        rng = random.Random(4000 + seed)
        got = run_actions(steering_rules(rng, 80, libbpf.possible_cpus()), FRAMES,
                          FilterOptions(drop_non_ip=seed % 2 == 1, policy_deny=seed % 3 == 2), seed & 1, rng)
        for v, n in got.items():
            seen[v] += n
    assert all(seen.values()), seen


@pytest.mark.matrix
def test_the_flow_hash_spreads_over_every_target():
    """One rule, redirect --to over 64 targets, one present at a time: each
    frame is redirected exactly when the oracle's pick is the one present,
    so the C's pick equals the oracle's for every frame."""
    rules = [dataclasses.replace(random_rules(random.Random(0), 1)[0], match=classify_all(),
                                 action=contract.ACTION_REDIRECT,
                                 steer=Steer(to=tuple(Target(f"t{i}", 2000 + i) for i in range(64))))]
    built = build(rules)
    layout = Layout().grown(built.needs)
    picks = {f: flow_hash.pick(f, 64) for f in FRAMES}
    assert len(set(picks.values())) > 16  # the frames do spread
    with scratch_dir("test") as d:
        tables = engine.create_tables(d, layout)
        steering.prepare(d, layout)
        loaded = compile_and_load(filter_program(FilterOptions(), d, layout))
        try:
            engine.write_tables(tables, 1, built, layout)
            engine.write_config(f"{d}/{contract.PIN_CONFIG}", 1, 1, 1, 1)
            with libbpf.opened(f"{d}/{contract.PIN_DEVMAP}") as fd:
                for target in sorted(set(picks.values())):
                    key = contract.DEVMAP_GEN + target  # generation 1, offset 0
                    libbpf.map_update(fd, KEY.pack(key), KEY.pack(LO))
                    for frame, pick in picks.items():
                        got = libbpf.prog_test_run(loaded.prog_fd, frame).retval
                        assert got == (XDP_REDIRECT if pick == target else XDP_ABORTED), (frame.hex(), target)
                    libbpf.map_delete(fd, KEY.pack(key))
        finally:
            loaded.close()


def classify_all():
    from xdpctl.rules.model import Match

    return Match()  # every frame
