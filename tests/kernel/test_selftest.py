"""xdpctl selftest: passes here, removes all it made (or keeps it with
--keep), and fails with a non-zero exit when the environment is not usable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from xdpctl.datapath import contract
from xdpctl.traffic import lab as labs
from xdpctl.lifecycle.state import STATE_ROOT

pytestmark = pytest.mark.kernel


def xdpctl(*args: str, no_caps: bool = False) -> subprocess.CompletedProcess:
    # no_caps: root with no capabilities (the checkout may be readable to root only)
    prefix = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"] if no_caps else []
    return subprocess.run([*prefix, sys.executable, "-m", "xdpctl", *args], capture_output=True, text=True,
                          timeout=180, cwd="/")


def leftovers() -> dict:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    state = [os.path.join(d, f) for d, _, fs in os.walk(STATE_ROOT) for f in fs if "selftest" in f]
    return {"labs": [lab.name for lab in labs.labs() if lab.name == "selftest"],
            "links": "xl-selftest" in links, "state": state}


@pytest.fixture
def no_selftest_lab():
    assert leftovers()["labs"] == [], "a selftest lab exists already"
    yield
    for lab in labs.labs():
        if lab.name == "selftest":
            subprocess.run([sys.executable, "-m", "xdpctl", "detach", lab.host_if], capture_output=True)
            labs.down(lab)


def test_selftest_passes_and_leaves_nothing(no_selftest_lab):
    r = xdpctl("selftest", "--json")
    data = json.loads(r.stdout)
    assert r.returncode == 0 and data["ok"] is True, r.stdout + r.stderr
    checks = {c["check"]: c for c in data["checks"]}
    assert set(contract.CLASSES) <= set(checks)
    assert all(c["ok"] for c in data["checks"])
    assert checks["arp"]["expected"].startswith("pass 0 (0 B), drop 3")  # --drop-non-ip was in force
    assert checks["passed UDP reaches a socket"]["seen"] == "1 datagram"
    assert data["kept_lab"] is None
    assert leftovers() == {"labs": [], "links": False, "state": []}


def test_selftest_keep_leaves_the_lab_and_its_program(no_selftest_lab):
    r = xdpctl("selftest", "--keep", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kept_lab"]["name"] == "selftest"
    (entry,) = [e for e in json.loads(xdpctl("status", "--json").stdout)["interfaces"]
                if e["ifname"] == "xl-selftest"]
    assert entry["managed"] is True and entry["options"] == ["drop-non-ip"]
    again = xdpctl("selftest")
    assert again.returncode == 2 and "lab 'selftest' exists already" in again.stderr


def test_selftest_without_privileges_fails_and_makes_nothing(no_selftest_lab):
    r = xdpctl("selftest", "--json", no_caps=True)
    data = json.loads(r.stdout)
    assert r.returncode == 1 and data["ok"] is False
    (priv,) = [c for c in data["checks"] if c["check"] == "privileges"]
    assert priv["ok"] is False and "missing CAP_BPF and CAP_NET_ADMIN" in priv["seen"]
    assert len(data["checks"]) == 4  # the environment only: no lab was made
    assert leftovers() == {"labs": [], "links": False, "state": []}
