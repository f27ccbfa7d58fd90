"""A SIGKILL at any point of a program swap leaves the old state or the new
one, never a mix: the next xdpctl settles what was left (recovery.py).

XDPCTL_TEST_KILL_AT kills xdpctl at a named point (faults.py); other tests
kill it at random moments.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import attached_prog_id, netns_ino
from test_apply import write
from test_crash_policy_and_rules import EXPECTED, configs, verdicts
from xdpctl import faults
from xdpctl.traffic import frames
from xdpctl.lifecycle.state import STATE_ROOT

pytestmark = pytest.mark.kernel

# Before the swap, the old state stays; after it, the new one does.
OUTCOME = {"flip-pinned": "old", "pinned-new": "old", "swapped": "old", "flipped": "old", "recorded": "new"}


def killed_at(klab, point: str, *args: str) -> None:
    env = dict(os.environ, **{faults.ENV: point})
    r = subprocess.run([sys.executable, "-m", "xdpctl", "--netns", klab.lab.host_netns, *args],
                       env=env, capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == -9, r.stderr


def pins(klab) -> list[str]:
    root = f"{STATE_ROOT}/ns{netns_ino(klab.lab.host_netns)}"
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def totals(counters: dict) -> tuple[int, int]:
    seen = [v for per in counters.values() for v in per.items()]
    return (sum(c["packets"] for verdict, c in seen if verdict == "pass"),
            sum(c["packets"] for verdict, c in seen if verdict == "drop"))


def drops_non_ip(klab) -> bool:
    """Whether the program on the interface drops non-IP frames (by its counters;
    it counts every frame either way)."""
    non_ip = frames.build("non-ip", klab.lab.endpoints())
    passed, dropped = totals(klab.counters())
    klab.send(non_ip)
    now = totals(klab.wait_for_total(passed + dropped + len(non_ip)))
    assert sum(now) == passed + dropped + len(non_ip)
    return now[1] == dropped + len(non_ip)


@pytest.mark.parametrize("point", faults.POINTS)
def test_a_first_attach_killed_midway_is_undone_or_finished(klab, point):
    killed_at(klab, point, "attach", klab.iface, "--drop-non-ip")
    (entry, *_) = klab.xdpctl.json("status")["interfaces"] or [None]
    if OUTCOME[point] == "old":
        assert entry is None and attached_prog_id(klab) == 0
        assert pins(klab) == []
    else:
        assert entry["managed"] is True and entry["options"] == ["drop-non-ip"]
        assert entry["prog_id"] == attached_prog_id(klab)
        names = [os.path.basename(p) for p in pins(klab)]
        assert "prog" in names and "prog_new" not in names
        assert drops_non_ip(klab)
        klab.xdpctl("detach", klab.iface)
    assert attached_prog_id(klab) == 0 and pins(klab) == []


@pytest.mark.parametrize("point", faults.POINTS)
def test_a_replace_killed_midway_keeps_the_old_program_or_the_new_one(klab, point):
    klab.xdpctl("attach", klab.iface)
    old = attached_prog_id(klab)
    before = pins(klab)
    killed_at(klab, point, "attach", klab.iface, "--drop-non-ip")
    (entry,) = klab.xdpctl.json("status")["interfaces"]
    assert entry["managed"] is True and entry["prog_id"] == attached_prog_id(klab)
    if OUTCOME[point] == "old":
        assert entry["prog_id"] == old and entry["options"] == []
        assert pins(klab) == before
        assert not drops_non_ip(klab)
    else:
        assert entry["prog_id"] != old and entry["options"] == ["drop-non-ip"]
        assert "prog_new" not in [os.path.basename(p) for p in pins(klab)]
        assert drops_non_ip(klab)
    klab.xdpctl("detach", klab.iface)
    assert attached_prog_id(klab) == 0 and pins(klab) == []


@pytest.mark.parametrize("point", faults.POINTS)
def test_a_change_of_policy_and_rules_killed_midway_is_exactly_the_old_or_the_new(klab, tmp_path, point):
    """apply of a deny policy with pass rules over an allow policy with drop
    rules (a program swap and a flip of the rule generation in one change),
    killed at each point: the next command settles it to the old file or the
    new one, as recorded (export) and as frames are treated."""
    texts = configs(klab.iface, 20)
    paths = {k: write(tmp_path, f"{k}.toml", t) for k, t in texts.items()}
    klab.xdpctl("apply", paths["old"])
    assert klab.xdpctl("export").stdout == texts["old"]
    killed_at(klab, point, "apply", paths["new"])
    assert klab.xdpctl.json("clean", "--dry-run")["leftovers"][0]["action"] == "settle"
    klab.xdpctl("clean")
    outcome = OUTCOME[point]
    assert klab.xdpctl("export").stdout == texts[outcome]
    assert verdicts(klab) == EXPECTED[outcome]
    assert not any(p.endswith(("prog_new", "config_flip")) for p in pins(klab)), pins(klab)
    klab.xdpctl("detach", klab.iface)
    assert attached_prog_id(klab) == 0 and pins(klab) == []
