"""The wheel, installed as a user would: built with pip from a copy of the
checkout, installed into a fresh virtual environment that sees the
distribution's BCC (--system-site-packages), and run from a directory outside
the repository with no PYTHONPATH. attach, stats and detach on a veth lab must
work from what the wheel carries (the BPF sources included) and count exactly.

The environment, the wheel and pip's downloads (the dependencies come from
PyPI; nothing is cached) live in one temporary directory, removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import attached_prog_id, netns_ino, verdicts
from package_build import BPF_SOURCES, REPO, copy_checkout

import xdpctl
from xdpctl.datapath import contract
from xdpctl.traffic import frames
from xdpctl.lifecycle.state import STATE_ROOT

pytestmark = pytest.mark.kernel

SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter Debian's python3-bpfcc is installed for


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@dataclass
class Installed:
    venv: Path
    workdir: Path  # outside the repository: the cwd of every command

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.venv / "bin" / "xdpctl"), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=self.workdir, env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError(f"installed xdpctl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def python(self, code: str) -> str:
        return _run([self.venv / "bin" / "python", "-c", code], cwd=self.workdir, env=self.env).stdout


@pytest.fixture(scope="module")
def installed():
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"needs {SYSTEM_PYTHON}, the interpreter BCC's bindings are installed for")
    tmp = Path(tempfile.mkdtemp(prefix="xdpctl-wheel-"))
    try:
        src = copy_checkout(tmp)
        dist = tmp / "dist"
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
              "--disable-pip-version-check", "-q", src, "-w", dist], cwd=tmp)
        (wheel,) = dist.glob("xdpctl-*.whl")
        venv = tmp / "venv"
        _run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", venv], cwd=tmp)
        workdir = tmp / "work"
        workdir.mkdir()
        inst = Installed(venv, workdir)
        _run([venv / "bin" / "python", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
              "-q", wheel], cwd=tmp, env=inst.env)
        yield inst
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_installed_package_is_the_wheels_with_its_bpf_sources(installed):
    site = installed.python("import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    out = installed.python("import xdpctl, xdpctl.datapath.program as p; print(xdpctl.__file__); print(p.bpf_dir())")
    package_file, bpf_dir = (Path(line) for line in out.split())
    assert package_file == Path(site) / "xdpctl" / "__init__.py"
    assert str(installed.venv) in site and not str(package_file).startswith(str(REPO))
    assert bpf_dir == Path(site) / "xdpctl" / "bpf" and not bpf_dir.is_symlink()
    assert sorted(p.name for p in bpf_dir.iterdir()) == BPF_SOURCES
    for name in BPF_SOURCES:
        assert (bpf_dir / name).read_bytes() == (REPO / "bpf" / name).read_bytes(), name
    assert installed.python("import bcc; print(hasattr(bcc, 'BPF'))").strip() == "True"
    assert installed.run("--version").stdout == f"xdpctl, version {xdpctl.__version__}\n"


def stats_once(installed, ns: str, iface: str) -> dict:
    return json.loads(installed.run("--netns", ns, "stats", iface, "--json").stdout)


def test_attach_stats_detach_from_the_installed_wheel(installed, klab):
    ns, iface = klab.lab.host_netns, klab.iface

    r = installed.run("--netns", ns, "attach", iface)
    m = re.fullmatch(rf"attached to {re.escape(iface)}: prog (\d+) \(native, count only\)\n", r.stdout)
    assert m, r.stdout
    prog_id = int(m.group(1))
    assert attached_prog_id(klab) == prog_id
    (entry,) = json.loads(installed.run("--netns", ns, "status", "--json").stdout)["interfaces"]
    assert (entry["ifname"], entry["prog_id"], entry["prog_name"], entry["managed"], entry["mode"]) == \
        (iface, prog_id, contract.PROG_NAME, True, "native")

    mix = frames.build("mix", klab.lab.endpoints())
    sent = klab.send(mix, count=len(mix) * 3)
    deadline = time.monotonic() + 5
    while True:
        (s,) = stats_once(installed, ns, iface)["interfaces"]
        if s["total"]["pass"]["packets"] >= len(mix) * 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.1)  # and let any frame that should not be there arrive
    (s,) = stats_once(installed, ns, iface)["interfaces"]
    assert {"ifname", "ifindex", "mode", "prog_id", "prog_name", "managed", "options", "counters",
            "total"} <= set(s)
    assert (s["ifname"], s["prog_id"], s["managed"], s["options"]) == (iface, prog_id, True, [])
    assert list(s["counters"]) == list(contract.CLASSES)
    assert s["counters"] == {
        cls: verdicts({"pass": {"packets": sent[(cls, "packets")], "bytes": sent[(cls, "bytes")]}})
        for cls in contract.CLASSES
    }
    assert s["total"] == verdicts({"pass": {"packets": len(mix) * 3, "bytes": sum(len(f) for f in mix) * 3}})

    r = installed.run("--netns", ns, "detach", iface)
    assert r.stdout == f"detached prog {prog_id} from {iface}\n"
    assert attached_prog_id(klab) == 0
    assert json.loads(installed.run("--netns", ns, "status", "--json").stdout)["interfaces"] == []
    assert not (Path(STATE_ROOT) / f"ns{netns_ino(ns)}").exists()
