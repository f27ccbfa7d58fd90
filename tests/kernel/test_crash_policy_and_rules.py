"""Issue 12, defect 1: an `apply` that changes the policy and the rules
together (an allow policy with drop rules <-> a deny policy with pass rules,
10,000 rules), killed with SIGKILL or interrupted with SIGINT at random
moments, is settled by the next xdpctl command to exactly the old file or
exactly the new one: by what xdpctl recorded (`export`) and by what the
program does to frames (one the old file passes and the new one drops, one
the other way round). A mix of the new policy with the old rules drops both.

Half the signals land at a random moment of the whole command; the other
half at a random moment within 150 ms after the new program is pinned
(prog_new appears just before the swap), where the program swap and the
flip of the rule generation happen.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from state_checks import assert_nothing_left, check_consistent, state_dir
from test_apply import write
from xdpctl.datapath import contract
from xdpctl.rules.config_file import dump
from xdpctl.rules.model import ACTIONS, Rule, parse_match
from xdpctl.rules.synthetic import mixed_values
from xdpctl.traffic import frames

pytestmark = pytest.mark.kernel

N_RULES = 10_000
RUNS = 12  # signals in all: bounded, like the time each may take
PORT_A, PORT_B = 7003, 7001  # A: the old file passes it, the new drops it; B: the other way round


def rule_set(action: str, seed: int, n: int = N_RULES) -> list[Rule]:
    """n rules of one action; none matches the test frames but the last,
    which decides frame B (TCP to PORT_B)."""
    rng = random.Random(seed)
    rules, seen = [], set()
    while len(rules) < n - 1:
        match = parse_match(mixed_values(rng))  # 11-100/8 sources, ports 10000+, random MACs
        if match not in seen:
            seen.add(match)
            i = len(rules) + 1
            rules.append(Rule(ACTIONS[action], match, contract.PRIORITY_DEFAULT, False, i, i, i - 1))
    last = parse_match({"proto": "tcp", "dport": str(PORT_B)})
    rules.append(Rule(ACTIONS[action], last, contract.PRIORITY_DEFAULT, False, n, n, n - 1))
    return rules


def configs(iface: str, n: int = N_RULES) -> dict[str, str]:
    """The old file (allow, drop rules) and the new one (deny, pass rules)."""
    return {"old": dump([(iface, "native", "allow", False, rule_set("drop", 21, n))]),
            "new": dump([(iface, "native", "deny", False, rule_set("pass", 22, n))])}


def verdicts(klab) -> tuple[str, str]:
    """What the program does to frame A (UDP to PORT_A) and frame B (TCP to PORT_B)."""
    ep = klab.lab.endpoints(dport=PORT_A)
    a = frames.udp_frame(ep, b"a")
    (b,) = frames.build("syn-flood", klab.lab.endpoints(dport=PORT_B))[:1]
    klab.xdpctl("stats", klab.iface, "--reset")
    klab.send([a, b])
    c = klab.wait_for_total(2)
    udp, tcp = c["ipv4/udp"], c["ipv4/tcp"]
    assert udp["pass"]["packets"] + udp["drop"]["packets"] == 1, c
    assert tcp["pass"]["packets"] + tcp["drop"]["packets"] == 1, c
    return ("pass" if udp["pass"]["packets"] else "drop", "pass" if tcp["pass"]["packets"] else "drop")


# (frame A, frame B) under each file; a mix of new policy and old rules drops both.
EXPECTED = {"old": ("pass", "drop"), "new": ("drop", "pass")}


def signal_at(klab, path: str, sig: int, delay: float, after_pin: bool) -> int:
    """Run `xdpctl apply path` and send sig delay seconds after it starts, or
    after the new program's pin appears (after_pin). Returns its exit code."""
    cmd = [sys.executable, "-m", "xdpctl", "--netns", klab.lab.host_netns, "apply", path]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")
    try:
        deadline = time.monotonic() + 120
        if after_pin:
            while p.poll() is None and time.monotonic() < deadline \
                    and not any((d / "prog_new").exists() for d in state_dir(klab).glob("if*")):
                time.sleep(0.001)
        try:
            p.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            p.send_signal(sig)
        p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=60)
    err = p.stderr.read().decode()
    p.stderr.close()
    assert "Traceback" not in err and "internal error" not in err, err
    return p.returncode


def test_apply_of_policy_and_rules_signalled_at_random_moments_settles_to_old_or_new(klab, tmp_path):
    texts = configs(klab.iface)
    paths = {k: write(tmp_path, f"{k}.toml", t) for k, t in texts.items()}
    start = time.monotonic()
    klab.xdpctl("apply", paths["new"], timeout=300)
    whole = time.monotonic() - start
    exported = {"new": klab.xdpctl("export").stdout}
    assert verdicts(klab) == EXPECTED["new"]
    klab.xdpctl("apply", paths["old"], timeout=300)
    exported["old"] = klab.xdpctl("export").stdout
    assert verdicts(klab) == EXPECTED["old"]
    assert exported["old"] != exported["new"]

    rng = random.Random(12)
    have, outcomes, progs = "old", [], set()
    for i in range(RUNS):
        want = "new" if have == "old" else "old"
        sig = signal.SIGKILL if i % 2 == 0 else signal.SIGINT
        after_pin = i % 4 < 2
        delay = rng.uniform(0, 0.15) if after_pin else rng.uniform(0.2, 1.2 * whole)
        rc = signal_at(klab, paths[want], sig, delay, after_pin)
        klab.xdpctl("clean", timeout=300)  # the next command settles what was left
        recorded = klab.xdpctl("export").stdout
        now = [k for k, text in exported.items() if recorded == text]
        assert len(now) == 1, f"recorded state is neither old nor new after {sig!r} at {delay:.3f} s"
        assert verdicts(klab) == EXPECTED[now[0]], (now, sig, delay, after_pin)
        progs.add(check_consistent(klab)["prog_id"])
        print("run", i, signal.Signals(sig).name, round(delay, 3), after_pin, rc, now[0], flush=True)
        outcomes.append((signal.Signals(sig).name, round(delay, 3), after_pin, rc, "kept" if now[0] == have else "changed"))
        have = now[0]
    print("whole:", round(whole, 2), "outcomes:", outcomes)
    final = check_consistent(klab)
    klab.xdpctl("detach", klab.iface)
    assert_nothing_left(klab, prog_ids=progs, map_ids=final["map_ids"])
    assert os.path.exists(paths["old"])
