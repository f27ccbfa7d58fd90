"""xdpctl clean removes only xdpctl's leftovers; detach --all removes only
xdpctl's programs."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from conftest import Xdpctl, attached_prog_id, netns_ino, remove_state_of
from xdpctl.lifecycle.state import STATE_ROOT

pytestmark = pytest.mark.kernel


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def test_clean_removes_state_whose_program_went_and_leaves_a_foreign_program(klab, foreign_prog):
    # foreign_prog sits on the lab interface; give xdpctl a second one whose
    # program someone removes behind its back.
    ns = klab.lab.host_netns
    ip("-n", ns, "link", "add", "xc0", "type", "veth", "peer", "name", "xc1")
    ip("-n", ns, "link", "set", "xc0", "up")
    klab.xdpctl("attach", "xc0")
    state = f"{STATE_ROOT}/ns{netns_ino(ns)}"
    (ours,) = os.listdir(state)
    ip("-n", ns, "link", "set", "xc0", "xdp", "off")

    dry = klab.xdpctl.json("clean", "--dry-run")
    assert [(x["path"], x["action"]) for x in dry["leftovers"]] == [(f"{state}/{ours}", "remove")]
    assert "no program is attached" in dry["leftovers"][0]["what"]
    assert os.listdir(state) == [ours]  # a dry run changes nothing

    r = klab.xdpctl("clean")
    assert r.stdout.startswith(f"removed {state}/{ours}: state of xc0")
    assert not os.path.exists(f"{state}/{ours}")
    assert attached_prog_id(klab) == foreign_prog  # never xdpctl's to touch
    assert klab.xdpctl("clean").stdout.strip() == "Nothing to clean: xdpctl's state matches the interfaces."


def test_clean_removes_the_state_of_a_deleted_namespace_only(klab):
    gone = "xdpctl-gone-" + secrets.token_hex(3)
    ip("netns", "add", gone)
    ino = netns_ino(gone)
    try:
        ip("-n", gone, "link", "add", "g0", "type", "veth", "peer", "name", "g1")
        ip("-n", gone, "link", "set", "g0", "up")
        klab.xdpctl("attach", klab.iface)
        Xdpctl(gone)("attach", "g0")
        ip("netns", "del", gone)
        lab_state = f"{STATE_ROOT}/ns{netns_ino(klab.lab.host_netns)}"
        before = sorted(os.listdir(lab_state))
        found = klab.xdpctl.json("clean")["leftovers"]
        assert [(x["path"], x["what"]) for x in found] == [
            (f"{STATE_ROOT}/ns{ino}", "state of a network namespace that no longer exists")]
        assert not os.path.exists(f"{STATE_ROOT}/ns{ino}")
        assert sorted(os.listdir(lab_state)) == before and attached_prog_id(klab) != 0
    finally:
        subprocess.run(["ip", "netns", "del", gone], capture_output=True)
        remove_state_of(ino)


def test_detach_all_removes_every_xdpctl_program_and_no_foreign_one(klab, foreign_prog):
    ns = klab.lab.host_netns
    for a, b in (("xa0", "xa1"), ("xb0", "xb1")):
        ip("-n", ns, "link", "add", a, "type", "veth", "peer", "name", b)
        ip("-n", ns, "link", "set", a, "up")
    klab.xdpctl("attach", "xa0")
    klab.xdpctl("attach", "xb0", "--drop-non-ip")
    r = klab.xdpctl("detach", "--all")
    assert sorted(line.rsplit(" ", 1)[1] for line in r.stdout.splitlines()) == ["xa0", "xb0"]
    entries = klab.xdpctl.json("status")["interfaces"]
    assert [(e["ifname"], e["prog_id"], e["managed"]) for e in entries] == [(klab.iface, foreign_prog, False)]
    state = f"{STATE_ROOT}/ns{netns_ino(ns)}"
    assert not os.path.exists(state) or os.listdir(state) == []
    assert klab.xdpctl("detach", "--all").stdout.strip() == "No interface carries an xdpctl program."
