"""Issue 12: interface names that are not UTF-8. The kernel takes any byte
but '/', ':' and spaces in a name (`ip link add name $'\\xff\\xfe' ...`), and
one such interface anywhere in a namespace made every gen and selftest there
an internal error (exit 70). Listing links must survive it; a command that
names such an interface refuses it in one line.

Each test makes a namespace of its own holding a veth pair whose end is
named b'\\xff\\xfe', and removes it (and what xdpctl made) afterwards.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import pytest

from conftest import remove_state_of
from state_checks import one_line_error

pytestmark = pytest.mark.kernel

ODD = b"\xff\xfe"  # not UTF-8
ODD_SHOWN = "'\\xff\\xfe'"


@pytest.fixture
def odd_ns():
    """A namespace with lo up, and a veth pair: ODD and a plain peer."""
    name = "xdpctl-odd-" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run([b"ip", b"-n", name.encode(), b"link", b"add", b"name", ODD, b"type", b"veth",
                        b"peer", b"name", b"odd-peer"], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        ino = __import__("os").stat(f"/var/run/netns/{name}").st_ino
        subprocess.run(["ip", "netns", "del", name], check=True)
        remove_state_of(ino)


def inside(ns: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """xdpctl run as a process of namespace ns (so that whatever it lists or
    imports sees ns's links), not through --netns."""
    return subprocess.run(["nsenter", f"--net=/var/run/netns/{ns}", sys.executable, "-m", "xdpctl", *args],
                          capture_output=True, text=True, errors="surrogateescape", timeout=timeout, cwd="/")


def test_listing_links_survives_a_name_that_is_not_utf8(odd_ns):
    """gen read scapy's list of the namespace's links when it loaded scapy,
    and scapy stopped at the name: exit 70. So did a lab made there."""
    lab = "odd" + secrets.token_hex(3)
    try:
        r = inside(odd_ns, "lab", "up", lab, "--json")
        assert r.returncode == 0, r.stderr
        r = inside(odd_ns, "gen", "--lab", lab, "--count", "5", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["frames"] == 5
        r = inside(odd_ns, "gen", "--iface", "lo", "--profile", "ip", "--count", "3", "--json")
        assert r.returncode == 0, r.stderr
    finally:
        r = inside(odd_ns, "lab", "down", lab)
        assert r.returncode == 0, r.stderr
    for args in (["status", "--json"], ["stats", "--json"], ["doctor"], ["clean", "--dry-run"]):
        r = subprocess.run([sys.executable, "-m", "xdpctl", "--netns", odd_ns, *args], capture_output=True,
                           text=True, errors="surrogateescape", timeout=120, cwd="/")
        assert r.returncode in (0, 1) and "internal error" not in r.stderr, (args, r.stderr)


def test_naming_such_an_interface_is_refused_in_one_line(odd_ns):
    name = ODD.decode(errors="surrogateescape")  # what argv hands over
    for args in (["attach", name], ["detach", name], ["stats", name], ["rule", "add", name, "drop"],
                 ["rule", "list", name], ["export", name]):
        r = subprocess.run([sys.executable, "-m", "xdpctl", "--netns", odd_ns, *args], capture_output=True,
                           text=True, timeout=120, cwd="/", errors="surrogateescape")
        one_line_error(r, 2, f"interface name {ODD_SHOWN} is not UTF-8", "rename the interface")


def test_a_managed_interface_renamed_so_is_still_shown_and_export_refuses_it(odd_ns):
    x = ["--netns", odd_ns]
    run = lambda *a: subprocess.run([sys.executable, "-m", "xdpctl", *x, *a], capture_output=True,  # noqa: E731
                                    text=True, errors="surrogateescape", timeout=120, cwd="/")
    r = run("attach", "odd-peer", "--mode", "generic")
    assert r.returncode == 0, r.stderr
    try:
        subprocess.run([b"ip", b"-n", odd_ns.encode(), b"link", b"set", b"dev", b"odd-peer", b"name", b"\xfe\xff"],
                       check=True)
        (entry,) = json.loads(run("status", "--json").stdout)["interfaces"]
        assert entry["managed"] is True and entry["ifname"].encode(errors="surrogateescape") == b"\xfe\xff"
        r = run("stats")
        assert r.returncode == 0 and "internal error" not in r.stderr, r.stderr
        one_line_error(run("export"), 2, "'\\xfe\\xff' is not UTF-8, so no xdpctl.toml can name it")
    finally:
        subprocess.run([b"ip", b"-n", odd_ns.encode(), b"link", b"set", b"dev", b"\xfe\xff", b"xdpgeneric", b"off"])
