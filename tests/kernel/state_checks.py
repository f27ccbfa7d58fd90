"""Helpers for the guarantee tests (tests/kernel/test_guarantees_*.py): what
xdpctl keeps for a lab, whether it agrees with the interface, programs other
tools load, and xdpctl runs with a change slipped in just before its netlink
call. Not a test module; the tests import it beside conftest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import attached_prog_id, netns_ino
from xdpctl.datapath import contract
from xdpctl.kernel import libbpf, netlink
from xdpctl.traffic.sender import Sender
from xdpctl.lifecycle.state import STATE_ROOT, Attachment

# A program xdp-tools ships (Debian's xdp-tools); `ip` loads it as another tool would.
FOREIGN_OBJ = "/usr/lib/x86_64-linux-gnu/bpf/xdpdump_xdp.o"
FOREIGN_NAME = "xdpdump"
IP_MODE = {"native": "xdpdrv", "generic": "xdpgeneric"}


def have_foreign_obj() -> bool:
    return os.path.exists(FOREIGN_OBJ) and shutil.which("ip") is not None


def ip_load_cmd(klab, mode: str = "native", force: bool = False) -> list[str]:
    """`ip link set dev IF xdpdrv obj ...`, in the lab's host namespace."""
    return ["ip", "-n", klab.lab.host_netns, *(["-force"] if force else []), "link", "set", "dev",
            klab.iface, IP_MODE[mode], "obj", FOREIGN_OBJ, "sec", "xdp"]


def load_foreign(klab, mode: str = "native", force: bool = False) -> int:
    """Attach xdpdump's program with iproute2; its program id."""
    subprocess.run(ip_load_cmd(klab, mode, force), check=True, capture_output=True)
    prog_id = attached_prog_id(klab)
    assert prog_id
    return prog_id


def link(klab):
    with netlink.Netlink(namespace=klab.lab.host_netns) as nl:
        return nl.link(klab.iface)


def state_dir(klab) -> Path:
    return Path(STATE_ROOT) / f"ns{netns_ino(klab.lab.host_netns)}"


def attachment(klab) -> Attachment:
    return Attachment(Path(STATE_ROOT), netns_ino(klab.lab.host_netns), link(klab).ifindex)


def tree(klab) -> list[str]:
    """Every entry under the lab's state directory, relative to it."""
    root = state_dir(klab)
    out = []
    for d, dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in dirs + files]
    return sorted(out)


def raw_meta(klab) -> bytes:
    with libbpf.opened(attachment(klab).pin(contract.PIN_META)) as fd:
        return libbpf.map_lookup(fd, b"\0\0\0\0", libbpf.map_info(fd).value_size)


def local_snapshot(klab) -> dict:
    """What a refused command must not change, limited to the lab (other
    tests may load programs and maps on this machine meanwhile): the lab's
    state tree, its meta, and the XDP programs on the lab's interfaces."""
    meta = raw_meta(klab) if state_dir(klab).is_dir() and os.path.exists(attachment(klab).pin("meta")) else None
    with netlink.Netlink(namespace=klab.lab.host_netns) as nl:
        links = {lk.ifname: lk.xdp for lk in nl.links()}
    return {"tree": tree(klab), "meta": meta, "links": links}


def pinned_id(path: str) -> tuple[str, int]:
    """('prog' or 'map', id) of a pin."""
    with libbpf.opened(path) as fd:
        try:
            return "prog", libbpf.prog_info(fd).id
        except OSError:
            pass
        return "map", libbpf.map_info(fd).id


def one_line_error(r: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdpctl: error: "), r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def check_consistent(klab, leftovers: list | None = None) -> dict:
    """The interface and xdpctl's state agree, as after any complete command:

    - at most one XDP program on the interface;
    - xdpctl's program is there exactly when its state is: one if<ifindex>
      directory, meta recording the attached program with nothing pending, the
      `prog` pin being that program, no prog_new and nothing set aside;
    - the pinned counters, tables and hits maps are the ones the program uses
      (one layout's tables and hits, no leftovers of an older one);
    - status and stats (fresh processes) say the same.

    leftovers: when a list, state left with no program attached (what a killed
    attach may leave for `xdpctl clean`) is allowed if status reports it as
    stale and stats refuses it; its entries are appended to the list.

    Returns {"prog_id", "map_ids", "pins"} (prog_id 0 when nothing is attached)."""
    lk = link(klab)
    xdp = lk.xdp
    assert xdp is None or (xdp.mode != "multi" and len(xdp.prog_ids) <= 1), xdp
    attached = xdp.prog_id if xdp else 0
    entries = sorted(os.listdir(state_dir(klab))) if state_dir(klab).is_dir() else []
    if not attached:
        status = klab.xdpctl.json("status")
        assert status["interfaces"] == []
        if entries and leftovers is not None:
            left = tree(klab)
            leftovers.append(left)
            if f"if{lk.ifindex}" in entries:
                assert [s["ifname"] for s in status.get("stale", [])] == [klab.iface], status
            r = klab.xdpctl("stats", klab.iface, check=False)
            assert r.returncode == 1 and "manages no program" in r.stderr, r.stderr
            return {"prog_id": 0, "map_ids": set(), "pins": left}
        assert entries == [], f"state left with no program attached: {tree(klab)}"
        return {"prog_id": 0, "map_ids": set(), "pins": []}
    if leftovers is not None and entries != [f"if{lk.ifindex}"]:
        leftovers.append(tree(klab))
        entries = [e for e in entries if e == f"if{lk.ifindex}"]
    assert entries == [f"if{lk.ifindex}"], entries
    att = attachment(klab)
    names = att.pins()
    assert "prog_new" not in names and {"prog", "meta", "counters"} <= set(names), names
    meta = att.read_meta()
    assert meta is not None and meta.abi_version == contract.ABI_VERSION
    assert (meta.prog_id, meta.pending_prog_id) == (attached, 0), (meta, attached)
    assert meta.ifindex == lk.ifindex and meta.ifname == klab.iface
    ids = {name: pinned_id(att.pin(name)) for name in names}
    assert ids["prog"] == ("prog", attached)
    with libbpf.opened(att.pin("prog")) as fd:
        used = set(libbpf.prog_info(fd).map_ids)
    tables = [n for n in names if n.startswith(contract.PIN_TABLES + "_")]
    hits = [n for n in names if n.startswith(contract.PIN_HITS + "_")]
    assert len(tables) <= 1 and len(hits) <= 1 and len(tables) == len(hits), names
    for name in ["counters", *tables, *hits]:
        assert ids[name][1] in used, f"pinned {name} is not the attached program's map"
    (entry,) = klab.xdpctl.json("status")["interfaces"]
    assert entry["managed"] is True and entry["prog_id"] == attached
    (stats,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    assert stats["prog_id"] == attached
    map_ids = {i for kind, i in ids.values() if kind == "map"} | used
    return {"prog_id": attached, "map_ids": map_ids, "pins": names}


def alive(kind: str, obj_id: int) -> bool:
    getter = libbpf.prog_fd_by_id if kind == "prog" else libbpf.map_fd_by_id
    try:
        fd = getter(obj_id)
    except FileNotFoundError:
        return False
    os.close(fd)
    return True


def wait_gone(kind: str, ids, timeout: float = 5.0) -> set:
    """The kernel frees programs and maps after an RCU grace period."""
    deadline = time.monotonic() + timeout
    left = set(ids)
    while left and time.monotonic() < deadline:
        left = {i for i in left if alive(kind, i)}
        time.sleep(0.05)
    return left


def assert_nothing_left(klab, prog_ids=(), map_ids=()) -> None:
    """No program on the interface, no state, and the given objects freed."""
    assert attached_prog_id(klab) == 0
    assert not state_dir(klab).exists(), tree(klab)
    assert wait_gone("prog", prog_ids) == set()
    assert wait_gone("map", map_ids) == set()


# A run of xdpctl in which another tool acts just before xdpctl's first
# netlink XDP call: the window the kernel's flags (no-replace,
# compare-and-swap) must close, since xdpctl's own checks are behind it.
_HOOKED = """
import subprocess, sys
from xdpctl.kernel import netlink
from xdpctl.cli import main

real, cmd, done = netlink.Netlink.xdp_set, {cmd!r}, []

def xdp_set(self, *args, **kwargs):
    if not done:
        done.append(1)
        subprocess.run(cmd, check=True, capture_output=True)
    return real(self, *args, **kwargs)

netlink.Netlink.xdp_set = xdp_set
main({argv!r})
"""


def run_with_intruder(klab, argv: list[str], intruder: list[str]) -> subprocess.CompletedProcess:
    argv = ["--netns", klab.lab.host_netns, *argv]
    code = _HOOKED.format(cmd=intruder, argv=argv)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")


class Stream:
    """Frames sent from the lab's peer in a thread until stopped, at a bounded
    rate and for at most max_seconds. per_frame: how often each went out."""

    def __init__(self, klab, fs: list[bytes], rate: float, max_seconds: float):
        self.klab, self.fs, self.rate, self.max_seconds = klab, fs, rate, max_seconds
        self.per_frame = [0] * len(fs)
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            with Sender(self.klab.lab.peer_if, self.klab.lab.netns) as s:
                deadline = time.monotonic() + self.max_seconds
                while not self.stop.is_set() and time.monotonic() < deadline:
                    r = s.send(self.fs, 10 * len(self.fs), rate=self.rate)
                    self.per_frame = [a + b for a, b in zip(self.per_frame, r.per_frame)]
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def __enter__(self) -> "Stream":
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
