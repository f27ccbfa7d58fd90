"""Issue 5, guarantee 5: xdpctl processes that change one interface at the
same time are serialised. Each ends with success or a clean one-line refusal
(never an internal error), and what is left afterwards is one consistent
state: at most one program, the pins that describe it, and nothing orphaned.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from state_checks import assert_nothing_left, attachment, check_consistent, pinned_id, state_dir
from xdpctl.traffic import frames

pytestmark = pytest.mark.kernel

PAIRS = 25
PARALLEL = 10
# The refusals a command may meet when another one got there first.
EXPECTED_REFUSALS = ("xdpctl manages no program on", "has no rule", "already has this rule")


def storm(klab, seed: int) -> list[list[str]]:
    """PAIRS pairs of commands that undo each other, shuffled."""
    rng = random.Random(seed)
    iface = klab.iface
    pairs = []
    for i in range(PAIRS):
        kind = i % 5
        if kind == 0:
            pairs.append((["attach", iface], ["detach", iface]))
        elif kind == 1:
            pairs.append((["attach", iface, "--drop-non-ip"], ["attach", iface]))
        elif kind == 2:  # a kind in use: maps only
            pairs.append((["rule", "add", iface, "drop", "--proto", "udp", "--dport", str(1000 + i)],
                          ["rule", "del", iface, str(rng.randint(1, 12))]))
        elif kind == 3:  # a new kind: a recompile and swap
            pairs.append((["rule", "add", iface, "drop", "--vlan", str(100 + i)],
                          ["rule", "del", iface, str(rng.randint(1, 12))]))
        else:
            pairs.append((["stats", iface, "--json"], ["status", "--json"]))
    cmds = [c for pair in pairs for c in pair]
    rng.shuffle(cmds)
    return cmds


class PinWatcher(threading.Thread):
    """Notes every map and program ever pinned for the lab's interface."""

    def __init__(self, klab):
        super().__init__(daemon=True)
        self.klab, self.seen = klab, {"map": set(), "prog": set()}
        self.stop = threading.Event()

    def run(self) -> None:
        att = attachment(self.klab)
        while not self.stop.is_set():
            for name in att.pins():
                try:
                    kind, obj_id = pinned_id(att.pin(name))
                except OSError:
                    continue  # unpinned meanwhile
                self.seen[kind].add(obj_id)
            time.sleep(0.05)


def run(klab, args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "xdpctl", "--netns", klab.lab.host_netns, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd="/")


def test_fifty_concurrent_changes_leave_one_consistent_state(klab):
    klab.xdpctl("attach", klab.iface)
    watcher = PinWatcher(klab)
    watcher.start()
    cmds = storm(klab, seed=5)
    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            results = list(pool.map(lambda args: (args, run(klab, args)), cmds))
    finally:
        watcher.stop.set()
        watcher.join(timeout=10)
    bad = []
    for args, r in results:
        lines = r.stderr.strip().splitlines()
        if "Traceback" in r.stderr or "internal error" in r.stderr:
            bad.append((args, r.returncode, r.stderr))
        elif r.returncode != 0 and not (
            r.returncode in (1, 2) and len(lines) == 1 and lines[0].startswith("xdpctl: error: ")
            and any(why in lines[0] for why in EXPECTED_REFUSALS)
        ):
            bad.append((args, r.returncode, r.stderr))
    assert bad == [], bad
    assert sum(r.returncode == 0 for _, r in results) >= PAIRS  # most of them did something

    final = check_consistent(klab)
    if final["prog_id"]:
        # The state left works: the program the pins name counts what is sent.
        total = lambda c: sum(v["packets"] for per in c.values() for v in per.values())  # noqa: E731
        ip = frames.build("ip", klab.lab.endpoints())
        before = total(klab.counters())
        klab.send(ip)
        assert total(klab.wait_for_total(before + len(ip))) == before + len(ip)
        klab.xdpctl("detach", klab.iface)
    assert_nothing_left(klab, prog_ids=watcher.seen["prog"] | {final["prog_id"]} - {0},
                        map_ids=watcher.seen["map"] | final["map_ids"])
    assert not any(f"ns{os.stat(f'/var/run/netns/{klab.lab.host_netns}').st_ino}" in d
                   for d in os.listdir("/sys/fs/bpf")), "a scratch or set-aside directory was left"
    assert not state_dir(klab).exists()


def _lock_cycles(root: str, n: int, errors) -> None:
    from xdpctl.lifecycle.state import State

    state = State(root)
    for _ in range(n):
        try:
            with state.lock():  # prunes the root on the way out: it is empty again
                (state.root / "ns1").mkdir(exist_ok=True)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.put(f"{type(exc).__name__}: {exc}")


def test_the_lock_holds_while_others_prune_the_state_root():
    """The last command to leave removes the state root; one arriving at that
    moment must make it again and wait its turn, not fail (every error here
    would reach a user as an internal error)."""
    import multiprocessing
    import shutil

    root = f"/sys/fs/bpf/xdpctl-locktest-{os.getpid()}"
    errors = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_lock_cycles, args=(root, 600, errors)) for _ in range(4)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=300)
        assert [w.exitcode for w in workers] == [0] * 4
        found = []
        while not errors.empty():
            found.append(errors.get())
        assert found == []
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
        shutil.rmtree(root, ignore_errors=True)
    assert not os.path.exists(root)  # the last one out pruned it


# xdpctl paused at a point of its change (a file appears when it gets there,
# and it goes on once the test makes a second one, or after 60 s).
_PAUSED = """
import os, sys, time
from xdpctl.cli import main
from xdpctl.kernel import compiler, netlink
at, go, point = sys.argv[1], sys.argv[2], sys.argv[3]

def pause():
    open(at, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.01)

if point == "compile":
    real_compile = compiler.compile_and_load
    def compile_and_load(*a, **k):
        pause()
        return real_compile(*a, **k)
    compiler.compile_and_load = compile_and_load
else:
    real_set = netlink.Netlink.xdp_set
    def xdp_set(self, *a, **k):
        pause()
        return real_set(self, *a, **k)
    netlink.Netlink.xdp_set = xdp_set
main(sys.argv[4:])
"""


@pytest.mark.parametrize("command, point", [
    (["attach"], "compile"),  # a first attach: its directory is made, nothing recorded yet
    (["attach"], "swap"),  # a first attach: the new program recorded as pending
    (["attach", "--drop-non-ip"], "swap"),  # a replace: pending, prog_new pinned
])
def test_readers_tell_a_change_in_flight_from_a_leftover(klab, tmp_path, command, point):
    """Issue 12, defect 16: while another xdpctl is midway through a healthy
    change, status and clean --dry-run (and doctor) say a change is in
    flight; they neither call it stale or unfinished nor wait for it."""
    if command == ["attach", "--drop-non-ip"]:
        klab.xdpctl("attach", klab.iface)
    at, go = tmp_path / "at", tmp_path / "go"
    argv = ["--netns", klab.lab.host_netns, command[0], klab.iface, *command[1:]]
    p = subprocess.Popen([sys.executable, "-c", _PAUSED, str(at), str(go), point, *argv],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        deadline = time.monotonic() + 60
        while not at.exists():
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() is not None else ""
            time.sleep(0.01)
        start = time.monotonic()
        status = klab.xdpctl.json("status")
        assert [(x["ifname"], x["reason"].startswith("another xdpctl is changing it")) for x in status["in_flight"]] \
            == [(klab.iface, True)], status
        assert "stale" not in status, status
        dry = klab.xdpctl.json("clean", "--dry-run")
        assert [x for x in dry["leftovers"] if x["path"].startswith(str(state_dir(klab)))] == [], dry
        assert any(n.endswith("(it holds its lock): a change in flight, or one a killed xdpctl left; "
                              "look again when it is done")
                   for n in dry["notes"]), dry
        doctor = subprocess.run([sys.executable, "-m", "xdpctl", "--netns", klab.lab.host_netns, "doctor", "--json"],
                                capture_output=True, text=True, timeout=60, cwd="/")
        (state,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "state"]
        # (Other namespaces' leftovers, of other tests on this machine, may make it a warning.)
        assert klab.iface not in state["detail"] and state["detail"].endswith("another xdpctl is changing it now"), state
        assert time.monotonic() - start < 30  # none of them waited for the change
        assert p.poll() is None  # still paused: what they saw was in flight
    finally:
        go.touch()
        p.wait(timeout=120)
        err = p.stderr.read()
        p.stderr.close()
    assert p.returncode == 0, err
    (entry,) = klab.xdpctl.json("status")["interfaces"]
    assert entry["managed"] is True and entry["options"] == [o[2:] for o in command[1:]] and "in_flight" not in entry
    dry = klab.xdpctl.json("clean", "--dry-run")  # other namespaces' state is other tests' and users'
    assert not [x for x in dry["leftovers"] + dry["notes"] if str(state_dir(klab)) in str(x)], dry
    check_consistent(klab)
