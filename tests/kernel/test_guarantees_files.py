"""Issue 12: what an unprivileged user can do to the files and directories
xdpctl uses as root. The attacker is a real other user (nobody, through
setpriv), acting in the one place they may: a directory of their own, or a
bpffs that everyone may write (mode 1777, as `mount -t bpf bpf DIR` gives).

Already covered elsewhere, not repeated here: every kind of entry at a
path (links, FIFOs, devices, directories) read or refused, and writes that
replace a link (tests/unit/test_safe_files.py); `service install --root`
with links planted in the tree (tests/unit/test_service_unit.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from state_checks import local_snapshot, one_line_error

pytestmark = pytest.mark.kernel

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*AS_NOBODY, *argv], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def nobodys_dir():
    """A directory owned by the attacker (they may rename anything in it)."""
    base = Path(tempfile.mkdtemp(prefix="xdpctl-files-"))
    try:
        base.chmod(0o755)
        d = base / "nobody"
        d.mkdir()
        os.chown(d, NOBODY, NOBODY)
        yield d
    finally:
        shutil.rmtree(base)


# The xdpctl process, with the attacker's move slipped in right after xdpctl
# itself (not click, which looks at the argument first) looks at the rule
# file's path: the worst moment for a program that checks a path and then
# opens it again.
_SWAP_AFTER_LOOK = """
import os, subprocess, sys
from xdpctl.cli import main

real, path, swap, done = os.stat, {path!r}, {swap!r}, []

def stat(p, *args, **kwargs):
    result = real(p, *args, **kwargs)
    if p == path and not done and sys._getframe(1).f_globals["__name__"].startswith("xdpctl."):
        done.append(1)
        subprocess.run(swap, check=True, capture_output=True)
    return result

os.stat = stat
main({argv!r})
"""


def test_a_rule_file_swapped_after_its_check_is_not_applied(klab, nobodys_dir):
    """root's rule file sits in a directory its owner may rename in. They
    swap their own file in just after xdpctl has checked root's: xdpctl read
    and applied theirs (a deny policy). Now what is read is what was checked."""
    path = str(nobodys_dir / "fw.toml")
    Path(path).write_text(f'[interfaces.{klab.iface}]\npolicy = "allow"\n')
    os.chmod(path, 0o644)  # root's, read-only to others: a trusted rule file
    evil = nobodys_dir / "evil.toml"
    as_nobody("sh", "-c", f"printf '[interfaces.{klab.iface}]\\npolicy = \"deny\"\\n' > {evil}")
    swap = [*AS_NOBODY, "mv", "-f", str(evil), path]
    before = local_snapshot(klab)
    code = _SWAP_AFTER_LOOK.format(path=path, swap=swap, argv=["--netns", klab.lab.host_netns, "apply", path])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert not evil.exists(), "the attacker's move did not happen: the test proves nothing"
    assert os.stat(path).st_uid == NOBODY
    one_line_error(r, 2, f"{path} is owned by uid {NOBODY}, not by root")
    assert local_snapshot(klab) == before


def test_a_rule_file_that_is_a_link_is_not_followed(klab, nobodys_dir, tmp_path):
    """A link the attacker controls chooses the file: refused, naming its target."""
    good = tmp_path / "good.toml"
    good.write_text(f'[interfaces.{klab.iface}]\npolicy = "deny"\n')
    good.chmod(0o600)
    link = nobodys_dir / "fw.toml"
    as_nobody("ln", "-s", str(good), str(link))
    before = local_snapshot(klab)
    one_line_error(klab.xdpctl("apply", str(link), check=False), 2, f"{link} is a symbolic link (to {good})")
    assert local_snapshot(klab) == before


def test_export_replaces_a_planted_link_and_writes_nothing_through_it(xdpctl_root, nobodys_dir, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root's own\n")
    secret.chmod(0o600)
    out = nobodys_dir / "running.toml"
    as_nobody("ln", "-s", str(secret), str(out))
    r = xdpctl_root("export", "-o", str(out), check=False)
    assert r.returncode == 0, r.stderr
    assert secret.read_text() == "root's own\n"
    assert not out.is_symlink() and out.stat().st_uid == 0 and (out.stat().st_mode & 0o777) == 0o600
    assert sorted(os.listdir(nobodys_dir)) == ["running.toml"]
