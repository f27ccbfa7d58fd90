"""After detach nothing of xdpctl's is left: no program, no map, no pin."""

from __future__ import annotations

import os

import pytest

from conftest import attached_prog_id, netns_ino
from state_checks import wait_gone
from xdpctl.kernel import libbpf
from xdpctl.lifecycle.state import STATE_ROOT

pytestmark = pytest.mark.kernel


def test_detach_leaves_no_program_map_or_pin(klab):
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    prog_id = attached_prog_id(klab)
    fd = libbpf.prog_fd_by_id(prog_id)
    try:
        map_ids = libbpf.prog_info(fd).map_ids
    finally:
        os.close(fd)
    state_dir = f"{STATE_ROOT}/ns{netns_ino(klab.lab.host_netns)}"
    assert sorted(os.listdir(state_dir)) and map_ids
    pins = os.listdir(os.path.join(state_dir, os.listdir(state_dir)[0]))
    assert sorted(pins) == ["counters", "meta", "netns", "prog"]

    out = klab.xdpctl("detach", klab.iface)
    assert f"detached prog {prog_id}" in out.stdout
    assert attached_prog_id(klab) == 0
    assert not os.path.exists(state_dir)
    assert wait_gone("prog", [prog_id]) == set()
    assert wait_gone("map", map_ids) == set()
    assert klab.xdpctl.json("status") == {"interfaces": []}
    r = klab.xdpctl("detach", klab.iface, check=False)
    assert r.returncode == 1 and "manages no program" in r.stderr


def test_stats_of_an_unmanaged_interface_is_refused(klab):
    r = klab.xdpctl("stats", klab.iface, check=False)
    assert r.returncode == 1 and "manages no program" in r.stderr
    assert klab.xdpctl.json("stats") == {"interfaces": []}


def test_the_state_root_goes_with_the_last_attachment(klab):
    klab.xdpctl("attach", klab.iface)
    assert os.path.isdir(STATE_ROOT)
    klab.xdpctl("detach", klab.iface)
    # Other attachments (another test run's, a user's) would keep it; this lab's was the only one.
    assert not os.path.exists(f"{STATE_ROOT}/ns{netns_ino(klab.lab.host_netns)}")
    if os.path.isdir(STATE_ROOT):
        assert os.listdir(STATE_ROOT)
