"""xdpctl doctor on a real machine: what it finds, and its exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel


def checks(klab) -> tuple[int, dict]:
    r = klab.xdpctl("doctor", "--json", check=False)
    data = json.loads(r.stdout)
    return r.returncode, {c["name"]: c for c in data["checks"]}


def test_doctor_passes_here_and_finds_leftovers_and_stateless_programs(klab, foreign_prog):
    code, found = checks(klab)
    assert code == 0
    for name in ("privileges", "bpffs", "bcc", "kernel headers"):
        assert found[name]["status"] in ("ok", "warn"), found[name]
    # BCC's empty program is named xdpctl_empty, and xdpctl has no state for it.
    assert found["programs"]["status"] == "warn"
    assert f"{klab.iface} (prog {foreign_prog})" in found["programs"]["detail"]
    assert found["state"]["status"] == "ok"

    ns = klab.lab.host_netns
    subprocess.run(["ip", "-n", ns, "link", "add", "xd0", "type", "veth", "peer", "name", "xd1"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "xd0", "up"], check=True)
    klab.xdpctl("attach", "xd0")
    subprocess.run(["ip", "-n", ns, "link", "set", "xd0", "xdp", "off"], check=True)
    code, found = checks(klab)
    assert code == 0 and found["state"]["status"] == "warn"
    assert "state of xd0: no program is attached" in found["state"]["detail"]
    assert "xdpctl clean" in found["state"]["hint"]


def test_doctor_fails_without_privileges_and_names_them():
    # Root with no capabilities (the checkout may be readable to root only).
    r = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--",
                        sys.executable, "-m", "xdpctl", "doctor"], capture_output=True, text=True, cwd="/")
    assert r.returncode == 1
    assert "missing CAP_BPF and CAP_NET_ADMIN" in " ".join(r.stdout.split())
