"""xdpctl clean removes only xdpctl's leftovers; detach --all removes only
xdpctl's programs."""

from __future__ import annotations

import contextlib
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


# A process that holds a namespace without being in it, as the ways a
# namespace outlives its name: a thread of it inside, or an open descriptor.
_HOLDER = r"""
import ctypes, os, select, sys, threading
how, path = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDONLY)
if how == "thread":
    entered = threading.Event()
    def inside():
        assert ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) == 0  # CLONE_NEWNET
        entered.set()
        select.select([sys.stdin], [], [], 120)
    t = threading.Thread(target=inside)
    t.start()
    entered.wait(10)
    os.close(fd)
    print(f"/proc/{os.getpid()}/task/{t.native_id}/ns/net", flush=True)
    t.join()
else:
    print(f"/proc/{os.getpid()}/fd/{fd}", flush=True)
    select.select([sys.stdin], [], [], 120)
"""


@pytest.mark.parametrize("holder", ["bind-mount", "thread", "fd"])
def test_clean_keeps_the_state_of_a_namespace_that_outlives_its_name(klab, tmp_path, holder):
    """Issue 12, defect 6: a namespace held by a bind mount outside
    /var/run/netns, by a thread or by an open descriptor is alive, with
    xdpctl's program attached in it: clean leaves its state alone. Once the
    last holder lets go, clean removes it."""
    import sys

    name = "xdpctl-held-" + secrets.token_hex(3)
    again = name + "-again"
    ip("netns", "add", name)
    ino = netns_ino(name)
    bind = tmp_path / "netns"
    proc = None
    mounts = []
    try:
        ip("-n", name, "link", "add", "h0", "type", "veth", "peer", "name", "h1")
        ip("-n", name, "link", "set", "h0", "up")
        Xdpctl(name)("attach", "h0")
        Xdpctl(name)("rule", "add", "h0", "drop", "--proto", "udp")
        (before,) = Xdpctl(name).json("stats", "h0")["interfaces"]
        if holder == "bind-mount":
            bind.touch()
            subprocess.run(["mount", "--bind", f"/var/run/netns/{name}", str(bind)], check=True)
            mounts.append(str(bind))
            held = str(bind)
        else:
            proc = subprocess.Popen([sys.executable, "-c", _HOLDER, holder, f"/var/run/netns/{name}"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            held = proc.stdout.readline().strip()
            assert held and os.stat(held).st_ino == ino
        ip("netns", "del", name)  # the name goes; the namespace lives on
        assert not os.path.exists(f"/var/run/netns/{name}")

        found = klab.xdpctl.json("clean")["leftovers"]
        assert f"{STATE_ROOT}/ns{ino}" not in [x["path"] for x in found], found
        assert os.path.isdir(f"{STATE_ROOT}/ns{ino}")
        # Its program is xdpctl's still, with its rules and counters.
        open(f"/var/run/netns/{again}", "w").close()
        subprocess.run(["mount", "--no-canonicalize", "--bind", held, f"/var/run/netns/{again}"], check=True)
        mounts.append(f"/var/run/netns/{again}")
        (entry,) = Xdpctl(again).json("status")["interfaces"]
        assert entry["managed"] is True and entry["prog_id"] == before["prog_id"]
        (after,) = Xdpctl(again).json("stats", "h0")["interfaces"]
        assert after["rules"] == before["rules"] and after["counters"] == before["counters"]

        # The last holder lets go: the namespace is gone, and so is its state.
        for m in reversed(mounts):
            subprocess.run(["umount", m], check=True)
        mounts.clear()
        if proc is not None:
            proc.stdin.close()
            proc.wait(timeout=30)
        found = klab.xdpctl.json("clean")["leftovers"]
        assert [(x["path"], x["what"]) for x in found if x["path"] == f"{STATE_ROOT}/ns{ino}"] == [
            (f"{STATE_ROOT}/ns{ino}", "state of a network namespace that no longer exists")], found
        assert not os.path.exists(f"{STATE_ROOT}/ns{ino}")
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", m], capture_output=True)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        with contextlib.suppress(OSError):
            os.unlink(f"/var/run/netns/{again}")
        remove_state_of(ino)
