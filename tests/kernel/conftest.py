"""Fixtures for kernel tests: an isolated veth lab per test, an xdpctl runner
that starts a fresh process for every command, and a sender in the peer.

Each lab gets a unique name and both its ends live in namespaces the test
made, so no frame reaches the machine's own namespace. Teardown removes the
namespaces (and with them the veths and XDP programs) and xdpctl's pins for
them, whether the test passed or not.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from xdpctl.datapath import classify, contract
from xdpctl.traffic import lab as labs
from xdpctl.traffic.sender import Sender
from xdpctl.lifecycle.state import STATE_ROOT


# A run started as a background job of a script (`cmd &`) inherits SIGINT
# ignored, and so would every xdpctl the tests start, where Python then
# never raises KeyboardInterrupt: the Ctrl-C tests need it delivered, as
# from a terminal. A Python handler here becomes SIG_DFL in each child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

pytestmark = pytest.mark.kernel

CACHE_ENV = "XDPCTL_CACHE_DIR"


@pytest.fixture(scope="session", autouse=True)
def compile_cache_dir():
    """The compile cache the run uses: XDPCTL_CACHE_DIR when the caller set it
    (a VM guest reading the host's cache, or a warm rerun), else a private one
    for the session (the run fills it: each variant is compiled once, and the
    machine's /var/cache/xdpctl is left alone), removed at the end."""
    if CACHE_ENV in os.environ:
        yield os.environ[CACHE_ENV]
        return
    parent = tempfile.mkdtemp(prefix="xdpctl-test-cache-")  # 0700, ours
    path = os.path.join(parent, "cache")
    os.environ[CACHE_ENV] = path  # inherited by every xdpctl the tests start
    try:
        yield path
    finally:
        os.environ.pop(CACHE_ENV, None)
        shutil.rmtree(parent, ignore_errors=True)


@dataclass
class Xdpctl:
    """Runs `python -m xdpctl` in a fresh process, inside the lab's host namespace."""

    netns: str | None

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "xdpctl"]
        if self.netns:
            cmd += ["--netns", self.netns]
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd="/")
        if check and proc.returncode != 0:
            raise AssertionError(f"xdpctl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def json(self, *args: str) -> dict:
        return json.loads(self(*args, "--json").stdout)


def netns_ino(name: str | None) -> int:
    path = f"/var/run/netns/{name}" if name else "/proc/1/ns/net"
    return os.stat(path).st_ino


@dataclass
class KernelLab:
    lab: labs.Lab
    xdpctl: Xdpctl

    @property
    def iface(self) -> str:
        return self.lab.host_if

    def send(self, frames: list[bytes], count: int | None = None) -> Counter:
        """Send frames (each once, or round-robin up to count) from the peer.
        Returns what was sent per class: packets and bytes, from the oracle."""
        with Sender(self.lab.peer_if, self.lab.netns) as s:
            result = s.send(frames, count or len(frames))
        sent = Counter()
        for frame, n in zip(frames, result.per_frame):
            cls = classify.classify(frame)
            sent[(cls, "packets")] += n
            sent[(cls, "bytes")] += n * len(frame)
        return sent

    def counters(self) -> dict:
        (entry,) = self.xdpctl.json("stats", self.iface)["interfaces"]
        return entry["counters"]

    def wait_for_total(self, packets: int, timeout: float = 5.0) -> dict:
        """Counters once their total reaches packets (frames are counted in
        softirq context, a moment after the send returns)."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.counters()
            total = sum(v["packets"] for per in c.values() for v in per.values())
            if total >= packets or time.monotonic() > deadline:
                time.sleep(0.1)  # and let any frame that should not be there arrive
                return self.counters()
            time.sleep(0.05)


ZERO = {"packets": 0, "bytes": 0}


def verdicts(given: dict) -> dict:
    """One class's counters as stats --json shows them: every verdict of the
    contract, in order, those not given zero ({"pass": {...}} and so on)."""
    return {v: dict(given.get(v, ZERO)) for v in contract.VERDICTS}


def expected(sent, drop_non_ip: bool) -> dict:
    """The counters a program with or without --drop-non-ip must show for
    what was sent (KernelLab.send's tally)."""
    out = {}
    for cls in contract.CLASSES:
        dropped = drop_non_ip and not cls.startswith("ipv")
        c = {"packets": sent[(cls, "packets")], "bytes": sent[(cls, "bytes")]}
        out[cls] = verdicts({"drop" if dropped else "pass": c})
    return out


def remove_state_of(ino: int) -> None:
    shutil.rmtree(Path(STATE_ROOT) / f"ns{ino}", ignore_errors=True)
    try:
        os.rmdir(STATE_ROOT)  # as xdpctl prunes it when empty: the next test starts as this one did
    except OSError:
        pass


@pytest.fixture
def klab():
    name = "t" + secrets.token_hex(4)
    lab = labs.up(name, isolated=True)
    ino = netns_ino(lab.host_netns)
    try:
        yield KernelLab(lab, Xdpctl(lab.host_netns))
    finally:
        labs.down(lab)
        remove_state_of(ino)


@pytest.fixture
def xdpctl_root():
    return Xdpctl(None)


@pytest.fixture
def foreign_prog(klab):
    """Attach a program xdpctl did not load (BCC's empty program, set through
    netlink directly), as another tool would. Yields its id."""
    from xdpctl.kernel import libbpf, netlink
    from xdpctl.kernel.compiler import compile_and_load
    from xdpctl.datapath.program import empty_program

    loaded = compile_and_load(empty_program())
    try:
        prog_id = libbpf.prog_info(loaded.prog_fd).id
        with netlink.Netlink(namespace=klab.lab.host_netns) as nl:
            nl.xdp_set(nl.link(klab.iface), loaded.prog_fd, "native", noexist=True)
    finally:
        loaded.close()
    yield prog_id


def attached_prog_id(klab) -> int:
    from xdpctl.kernel import netlink

    with netlink.Netlink(namespace=klab.lab.host_netns) as nl:
        xdp = nl.link(klab.iface).xdp
        return xdp.prog_id if xdp else 0


def snapshot(klab) -> dict:
    """What a failed command must not change: bpffs, loaded programs and
    maps, and the XDP state of the lab's interfaces."""
    from xdpctl.kernel import libbpf, netlink

    tree = sorted(os.path.join(d, f) for d, dirs, files in os.walk("/sys/fs/bpf") for f in dirs + files)
    with netlink.Netlink(namespace=klab.lab.host_netns) as nl:
        links = {link.ifname: link.xdp for link in nl.links()}
    return {"bpffs": tree, "progs": libbpf.prog_ids(), "maps": libbpf.map_ids(), "links": links}
