"""Tab after `xdpctl --netns NS rule del IFACE` offers the interface's rule
ids from xdpctl's real pins, in decision order, each with what it does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel


def tab(words: list[str], shell: str) -> list[str]:
    env = {**os.environ, "_XDPCTL_COMPLETE": f"{shell}_complete", "COMP_WORDS": " ".join(words) + " ",
           "COMP_CWORD": str(len(words))}
    r = subprocess.run([sys.executable, "-m", "xdpctl"], env=env, capture_output=True, text=True, timeout=60,
                       cwd="/")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return [line for line in r.stdout.splitlines() if line]


def test_rule_ids_complete_from_the_pins(klab):
    ns, iface = klab.lab.host_netns, klab.iface
    words = ["xdpctl", "--netns", ns, "rule", "del", iface]
    assert tab(words, "bash") == []  # not attached: nothing recorded
    klab.xdpctl("attach", iface)
    klab.xdpctl("rule", "add", iface, "drop", "--proto", "udp", "--dport", "53")
    klab.xdpctl("rule", "add", iface, "pass", "--proto", "tcp", "--dport", "22", "--priority", "5")
    assert tab(words, "bash") == ["plain,2", "plain,1"]
    assert tab(words, "zsh") == ["plain", "2", "pass proto tcp dport 22 (priority 5)",
                                 "plain", "1", "drop proto udp dport 53 (priority 1000)"]
    assert tab(["xdpctl", "--netns", ns, "detach"], "bash") == [f"plain,{n}" for n in sorted(["lo", iface])]
    klab.xdpctl("rule", "del", iface, "2")
    assert tab(words, "bash") == ["plain,1"]
