"""Issue 12: in a user namespace (`unshare -Ur`, as an unprivileged user), a
process holds every capability over that namespace, and CapEff says so; but
the kernel checks bpf() against the machine's user namespace, and netlink
against the one that owns the network namespace, and answers EPERM. rule
list, apply --dry-run, lab up and selftest exited 70 there. Every command
must refuse for the missing capability instead: one line (a table for
selftest and doctor), exit 1, nothing changed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from state_checks import one_line_error
from xdpctl.traffic.lab import NETNS_PREFIX

pytestmark = pytest.mark.kernel

NOBODY = 65534
IN_USERNS = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
             "unshare", "--user", "--map-root-user", "--"]


def in_userns(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*IN_USERNS, sys.executable, "-m", "xdpctl", *args], capture_output=True, text=True,
                          timeout=120, cwd="/", env={**os.environ, "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"})


@pytest.fixture
def nobodys_file():
    """A rule file nobody owns: inside the user namespace, root's own."""
    base = Path(tempfile.mkdtemp(prefix="xdpctl-userns-"))
    try:
        base.chmod(0o755)
        path = base / "lo.toml"
        path.write_text("[interfaces.lo]\npolicy = \"allow\"\n")
        path.chmod(0o600)
        os.chown(path, NOBODY, NOBODY)
        yield str(path)
    finally:
        shutil.rmtree(base)


def test_the_user_namespace_is_what_unshare_makes():
    """The premise: inside, CapEff holds everything (so a check of CapEff alone passes)."""
    r = subprocess.run([*IN_USERNS, "grep", "CapEff", "/proc/self/status"], capture_output=True, text=True)
    assert r.returncode == 0 and int(r.stdout.split()[1], 16) >> 39 & 1, r.stdout


@pytest.mark.parametrize("args, what", [
    (["rule", "list", "lo"], "reading xdpctl's rules needs CAP_BPF"),
    (["apply", "--dry-run", "{file}"], "applying a configuration needs CAP_BPF"),
    (["lab", "up", "{lab}"], "making a lab (namespaces and a veth pair) needs CAP_SYS_ADMIN"),
    (["stats"], "reading xdpctl's counters needs CAP_BPF"),
    (["status"], "reading /sys/fs/bpf/xdpctl needs root"),
    (["export"], "reading xdpctl's rules needs CAP_BPF"),
    (["attach", "lo"], "attaching XDP to lo needs CAP_BPF"),
    (["detach", "lo"], "needs CAP_BPF"),
    (["clean"], "needs CAP_BPF"),
    (["gen", "--iface", "lo", "--count", "1"], "sending raw frames needs CAP_NET_RAW"),
])
def test_every_command_refuses_for_the_capability_in_one_line(nobodys_file, args, what):
    lab = "un" + secrets.token_hex(4)
    args = [a.format(file=nobodys_file, lab=lab) for a in args]
    r = in_userns(*args)
    one_line_error(r, 1, what, "user namespace", "do not count")
    assert NETNS_PREFIX + lab not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                    text=True).stdout


@pytest.mark.parametrize("command", ["selftest", "doctor"])
def test_selftest_and_doctor_report_it_in_their_table(command):
    r = in_userns(command)
    assert r.returncode == 1 and "internal error" not in r.stderr, r.stderr
    assert "privileges" in r.stdout and "user namespace" in " ".join(r.stdout.split()), r.stdout
