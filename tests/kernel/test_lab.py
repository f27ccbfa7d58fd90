"""xdpctl lab up, raced: issue 12, defect 15."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from xdpctl.kernel import netlink
from xdpctl.traffic import lab as labs

pytestmark = pytest.mark.kernel

ROUNDS = 4


def test_two_lab_ups_of_one_name_at_once_leave_the_winners_lab_whole():
    """The loser of two `lab up NAME` at once says the lab exists and leaves
    it alone (it removed the winner's lab)."""
    for _ in range(ROUNDS):
        name = "r" + secrets.token_hex(3)
        cmd = [sys.executable, "-m", "xdpctl", "lab", "up", name]
        try:
            procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
                     for _ in range(2)]
            results = sorted((p.wait(timeout=120), p.stderr.read()) for p in procs)
            for p in procs:
                p.stdout.close()
                p.stderr.close()
            assert [code for code, _ in results] == [0, 2], results
            assert f"lab {name!r} exists already" in results[1][1], results
            lab = labs.find(name)  # whole: its namespace, its index read back from the peer's address
            assert lab.index > 0 and lab.netns in netlink.netns_names()
            with netlink.Netlink() as host:
                link = host.link(lab.host_if)
                assert lab.host4 in host.ipv4_addresses(link.ifindex)
        finally:
            for lab in labs.labs():
                if lab.name == name:
                    labs.down(lab)
            subprocess.run(["ip", "link", "del", labs.HOST_PREFIX + name], capture_output=True)
            subprocess.run(["ip", "netns", "del", labs.NETNS_PREFIX + name], capture_output=True)
        assert name not in [lab.name for lab in labs.labs()]
