"""The compiled rule engine through BPF_PROG_TEST_RUN (no veth): for random
rule sets of every kind of match, at sizes that need one to several bitmap
words, every frame gets the verdict of the first matching rule in priority
order (or the policy), and that rule's hits count it, exactly as the Python
reference (xdpctl.rules.model.decide) says."""

from __future__ import annotations

import random

import pytest

from rulegen import FRAMES, random_rules
from xdpctl.datapath import classify, contract
from xdpctl.rules import engine
from xdpctl.kernel import libbpf
from xdpctl.kernel.compiler import compile_and_load
from xdpctl.datapath.layout import Layout
from xdpctl.datapath.program import FilterOptions, filter_program
from xdpctl.rules.model import decide
from xdpctl.lifecycle.state import scratch_dir
from xdpctl.rules.tables import build

pytestmark = pytest.mark.kernel

XDP_DROP, XDP_PASS = 1, 2


def run_rule_set(rules, options: FilterOptions, frames: list[bytes]) -> None:
    built = build(rules)
    layout = Layout().grown(built.needs)
    with scratch_dir("test") as d:
        tables = engine.create_tables(d, layout)
        loaded = compile_and_load(filter_program(options, d, layout))
        try:
            engine.write_tables(tables, 1, built, layout)
            engine.write_config(f"{d}/{contract.PIN_CONFIG}", 1, len(rules), 1, 1)
            hits_pin = f"{d}/{layout.pin_hits()}"
            expected_hits: dict[int, list[int]] = {}
            for frame in frames:
                p = classify.parse(frame)
                if options.drop_non_ip and not p.is_ip:
                    want, winner = XDP_DROP, None
                else:
                    winner = decide(rules, p)
                    if winner is None:
                        want = XDP_DROP if options.policy_deny else XDP_PASS
                    else:
                        want = XDP_DROP if winner.action == contract.ACTION_DROP else XDP_PASS
                got = libbpf.prog_test_run(loaded.prog_fd, frame).retval
                assert got == want, (frame.hex(), winner)
                if winner is not None:
                    c = expected_hits.setdefault(winner.slot, [0, 0])
                    c[0] += 1
                    c[1] += len(frame)
            assert engine.read_hits(hits_pin, layout.slots) == {k: tuple(v) for k, v in expected_hits.items()}
        finally:
            loaded.close()


SIZES = [1, 3, 10, 40, 80, 150, 300, 10, 40, 150, 700, 1200]
IN_THE_MATRIX = {0, 5, 11}  # one rule, one bitmap word, several: also run on 6.1 and 6.12


@pytest.mark.parametrize("seed,n", [
    pytest.param(s, n, marks=pytest.mark.matrix) if s in IN_THE_MATRIX else (s, n) for s, n in enumerate(SIZES)
])
def test_random_rule_sets(seed, n):
    rng = random.Random(1000 + seed)
    run_rule_set(random_rules(rng, n), FilterOptions(), FRAMES)


@pytest.mark.matrix
def test_policy_deny_and_drop_non_ip_come_first():
    rng = random.Random(77)
    run_rule_set(random_rules(rng, 30), FilterOptions(drop_non_ip=True, policy_deny=True), FRAMES)


def test_truncations_never_break_the_engine():
    rng = random.Random(5)
    rules = random_rules(rng, 60)
    cut = [f[:n] for f in FRAMES[:30] for n in range(14, len(f) + 1, 3)]
    run_rule_set(rules, FilterOptions(), cut)
