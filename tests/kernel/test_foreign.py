"""A program xdpctl did not load is never replaced or removed without --force."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import attached_prog_id, netns_ino
from xdpctl.lifecycle.state import STATE_ROOT

pytestmark = pytest.mark.kernel


def test_attach_refuses_a_foreign_program_and_names_it(klab, foreign_prog):
    r = klab.xdpctl("attach", klab.iface, "--drop-non-ip", check=False)
    assert r.returncode == 1
    assert f"XDP program {foreign_prog} (xdpctl_empty)" in r.stderr and "--force" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert attached_prog_id(klab) == foreign_prog
    (entry,) = klab.xdpctl.json("status")["interfaces"]
    assert entry["managed"] is False and entry["prog_id"] == foreign_prog
    assert not os.path.exists(f"{STATE_ROOT}/ns{netns_ino(klab.lab.host_netns)}")  # nothing left half-made


def test_detach_refuses_a_foreign_program(klab, foreign_prog):
    r = klab.xdpctl("detach", klab.iface, check=False)
    assert r.returncode == 1 and f"program {foreign_prog}" in r.stderr
    assert attached_prog_id(klab) == foreign_prog


def test_force_replaces_a_foreign_program(klab, foreign_prog):
    r = klab.xdpctl("attach", klab.iface, "--force")
    assert "replaced a foreign program" in r.stdout
    new = attached_prog_id(klab)
    assert new not in (0, foreign_prog)
    assert klab.xdpctl.json("status")["interfaces"][0]["managed"] is True
    klab.xdpctl("detach", klab.iface)
    assert attached_prog_id(klab) == 0


def test_a_program_swapped_in_behind_xdpctl_is_not_removed(klab):
    """Someone replaces xdpctl's program: detach must leave theirs alone."""
    from xdpctl.kernel import libbpf, netlink
    from xdpctl.kernel.compiler import compile_and_load
    from xdpctl.datapath.program import empty_program

    klab.xdpctl("attach", klab.iface)
    loaded = compile_and_load(empty_program())
    try:
        theirs = libbpf.prog_info(loaded.prog_fd).id
        with netlink.Netlink(namespace=klab.lab.host_netns) as nl:
            nl.xdp_set(nl.link(klab.iface), loaded.prog_fd, "native")
    finally:
        loaded.close()
    r = klab.xdpctl("detach", klab.iface, check=False)
    assert r.returncode == 1 and f"program {theirs}" in r.stderr
    assert attached_prog_id(klab) == theirs
    r = klab.xdpctl("attach", klab.iface, check=False)
    assert r.returncode == 1 and "--force" in r.stderr
    assert attached_prog_id(klab) == theirs


@pytest.mark.skipif(shutil.which("xdp-filter") is None, reason="needs xdp-filter (Debian's xdp-tools)")
def test_xdp_filter_is_left_alone(klab):
    before = set(os.listdir("/sys/fs/bpf"))
    enter = ["nsenter", f"--net=/var/run/netns/{klab.lab.host_netns}"]
    subprocess.run([*enter, "xdp-filter", "load", klab.iface, "-m", "native"], check=True, capture_output=True)
    try:
        theirs = attached_prog_id(klab)
        assert theirs
        assert klab.xdpctl("attach", klab.iface, check=False).returncode == 1
        assert klab.xdpctl("detach", klab.iface, check=False).returncode == 1
        assert attached_prog_id(klab) == theirs
        name = klab.xdpctl.json("status")["interfaces"][0]["prog_name"]
        assert name.startswith("xdpfilt")
    finally:
        subprocess.run([*enter, "xdp-filter", "unload", klab.iface], capture_output=True)
        for entry in set(os.listdir("/sys/fs/bpf")) - before:
            path = f"/sys/fs/bpf/{entry}"
            if os.path.isdir(path) and not os.listdir(path):
                os.rmdir(path)
