"""The oldest kernel xdpctl supports: release strings of every form, and the
one-line refusal of doctor, attach and anything that loads a program (no
root needed: the release is injected)."""

from __future__ import annotations

import errno

import pytest
from click.testing import CliRunner

from xdpctl.checks import doctor
from xdpctl.cli import cli
from xdpctl.datapath.layout import Layout
from xdpctl.datapath.program import FilterOptions, empty_program, filter_program
from xdpctl.errors import MissingCapability, UnsupportedKernel, VerifierRejected
from xdpctl.kernel import compiler, kernel_version
from xdpctl.rules.model import ACTIONS, Rule, parse_match
from xdpctl.rules.tables import build


@pytest.mark.parametrize("release, version", [
    ("6.1.0-57-amd64", (6, 1, 0)),
    ("6.18.44-fc-v657", (6, 18, 44)),
    ("5.15.0-91-generic", (5, 15, 0)),
    ("6.8.0-rc1", (6, 8, 0)),
    ("6.12.117+deb12-amd64", (6, 12, 117)),
    ("4.19.0+", (4, 19, 0)),
    ("6.1", (6, 1, 0)),
    ("10.0.1", (10, 0, 1)),
    (" 6.2.3\n", (6, 2, 3)),
])
def test_release_strings_parse(release, version):
    assert kernel_version.parse(release) == version


@pytest.mark.parametrize("release", ["", "linux", "v6.1", "-6.1"])
def test_a_release_without_a_version_is_not_refused(release):
    assert kernel_version.parse(release) is None
    kernel_version.require_supported(release)  # the kernel will say what it thinks


@pytest.mark.parametrize("release, ok", [
    ("6.1.0-57-amd64", True), ("6.1.0", True), ("6.18.44-fc-v657", True), ("6.12.117+deb12-amd64", True),
    ("7.0.0", True), ("10.1", True), ("6.0.19", False), ("5.15.0-91-generic", False), ("5.8.0", False),
    ("4.19.0+", False), ("3.10.0-1160.el7.x86_64", False),
])
def test_the_minimum_is_6_1(release, ok):
    assert kernel_version.supported(release) is ok
    if ok:
        kernel_version.require_supported(release)
    else:
        with pytest.raises(UnsupportedKernel) as err:
            kernel_version.require_supported(release)
        assert str(err.value).startswith(f"Linux {release} is older than 6.1, the oldest kernel xdpctl supports")
        assert "\n" not in str(err.value)


@pytest.fixture
def old_kernel(monkeypatch):
    monkeypatch.setattr(kernel_version, "running_release", lambda: "5.15.0-91-generic")


def test_loading_anything_on_an_old_kernel_stops_before_bcc(old_kernel, monkeypatch):
    """compile_and_load is where attach, rule changes, apply, selftest and
    bench all load: it refuses first, before headers, the cache or BCC."""
    monkeypatch.setattr(compiler, "find_kernel_headers", lambda *a, **k: pytest.fail("looked for headers"))
    monkeypatch.setattr(compiler, "_import_bcc", lambda: pytest.fail("imported BCC"))
    with pytest.raises(UnsupportedKernel, match="Linux 5.15.0-91-generic is older than 6.1"):
        compiler.compile_and_load(empty_program())


def test_attach_on_an_old_kernel_is_one_line(old_kernel):
    result = CliRunner().invoke(cli, ["attach", "eth0", "--drop-non-ip"])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line == ("xdpctl: error: Linux 5.15.0-91-generic is older than 6.1, the oldest kernel xdpctl supports; "
                    "boot Linux 6.1 or newer (docs/install.md, \"Kernels\", says why)")


def test_doctor_fails_its_kernel_check_on_an_old_kernel():
    check = doctor._kernel("5.15.0-91-generic")
    assert check.status == doctor.FAIL
    assert check.detail == "Linux 5.15.0-91-generic is older than 6.1, the oldest kernel xdpctl supports"
    assert "6.1 or newer" in check.hint
    assert doctor._kernel("6.1.0-57-amd64").status == doctor.OK


def test_a_rejection_names_the_kernel_and_the_variant():
    rules = [Rule(ACTIONS["drop"], parse_match({"src": "198.51.100.0/24", "dport": "53", "proto": "udp"}), id=1, seq=1,
                  slot=0)]
    layout = Layout().grown(build(rules).needs)
    request = filter_program(FilterOptions(drop_non_ip=True, policy_deny=True), "/sys/fs/bpf/x", layout)
    log = "0: (b7) r0 = 0\nmath between pkt pointer and register with unbounded min value is not allowed\n" \
          "processed 12 insns (limit 1000000)\n"
    err = compiler.refused(request, errno.EACCES, log, release="6.1.0-57-amd64")
    assert isinstance(err, VerifierRejected) and err.detail == log
    assert str(err) == ("the verifier of Linux 6.1.0-57-amd64 rejected the program (variant: drop-non-ip, policy deny, "
                        "kinds src,proto,dport, 1024 rules, 64 general): math between pkt pointer and register with "
                        "unbounded min value is not allowed")
    big = compiler.refused(filter_program(FilterOptions(), None), errno.E2BIG, "", release="6.12.1")
    assert str(big) == "the verifier of Linux 6.12.1 rejected the program (variant: count only): it is too large"
    assert isinstance(compiler.refused(request, errno.EPERM, ""), MissingCapability)
