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

from conftest import attached_prog_id
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


# --- the state directory on a bpffs everyone may write ----------------------------
#
# Each case runs in a private mount namespace with a bpffs of its own at
# /sys/fs/bpf, mounted as `mount -t bpf bpf /sys/fs/bpf` mounts it (mode
# 1777) unless said: nothing reaches the machine's bpffs, and it all goes with
# the namespace.

_IN_PRIVATE_BPFFS = """
import json, os, stat, subprocess, sys
subprocess.run(["mount", "--make-rprivate", "/sys"], check=True)
subprocess.run(["umount", "/sys/fs/bpf"], capture_output=True)
subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True)
out = []
for who, argv in {steps!r}:
    if who == "nobody":
        argv = {as_nobody!r} + argv
    elif who == "xdpctl":
        argv = [sys.executable, "-m", "xdpctl", "--netns", {netns!r}] + argv
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    out.append({{"argv": argv, "rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}})
def look(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return [stat.S_IMODE(st.st_mode), st.st_uid, stat.S_ISLNK(st.st_mode), sorted(os.listdir(path))
            if stat.S_ISDIR(st.st_mode) else None]
print(json.dumps({{"steps": out, "look": {{p: look(p) for p in {look!r}}}}}))
"""


def in_private_bpffs(klab, steps, look=()) -> dict:
    """Run steps, (who, argv) with who "nobody", "root" or "xdpctl" (argv
    are its arguments, in the lab's namespace), on a fresh bpffs; what each
    step did, and what is at each path of look afterwards."""
    code = _IN_PRIVATE_BPFFS.format(steps=steps, netns=klab.lab.host_netns, as_nobody=AS_NOBODY,
                                    look=list(look))
    r = subprocess.run(["unshare", "--mount", "--propagation", "unchanged", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=300, cwd="/")
    assert r.returncode == 0, r.stderr
    import json

    return json.loads(r.stdout)


def step_error(step: dict, code: int, *fragments: str) -> None:
    one_line_error(subprocess.CompletedProcess(step["argv"], step["rc"], step["stdout"], step["stderr"]),
                   code, *fragments)


STATE = "/sys/fs/bpf/xdpctl"


@pytest.mark.parametrize("command", [["attach", "{iface}"], ["status"], ["clean"]])
def test_a_state_directory_someone_else_made_is_refused_and_left_alone(klab, command):
    """nobody makes /sys/fs/bpf/xdpctl before xdpctl does. xdpctl chmodded
    it to 0700 and used it, leaving nobody its owner: free to hold the lock
    or rename xdpctl's state away. Now it is refused, and left as it was."""
    argv = [a.format(iface=klab.iface) for a in command]
    result = in_private_bpffs(klab, [("nobody", ["mkdir", "-m", "0777", STATE]), ("xdpctl", argv)], look=[STATE])
    made, run = result["steps"]
    assert made["rc"] == 0, made
    step_error(run, 1, f"{STATE} is owned by uid {NOBODY}, not by root", f"rm -r {STATE}",
               "mount -t bpf -o mode=0700 bpf /sys/fs/bpf")
    assert result["look"][STATE] == [0o777, NOBODY, False, []]
    assert attached_prog_id(klab) == 0


def test_a_link_planted_at_the_state_directory_is_not_followed(klab, nobodys_dir):
    """A link at /sys/fs/bpf/xdpctl made xdpctl chmod its target (and keep
    its state there). Now it is refused, and its target left as it was."""
    target = str(nobodys_dir / "elsewhere")
    result = in_private_bpffs(klab, [("nobody", ["mkdir", "-m", "0777", target]),
                                     ("nobody", ["ln", "-s", target, STATE]),
                                     ("xdpctl", ["attach", klab.iface]), ("xdpctl", ["status"])],
                              look=[STATE, target])
    for step in result["steps"][:2]:
        assert step["rc"] == 0, step
    for step in result["steps"][2:]:
        step_error(step, 1, f"{STATE} is a symbolic link (to {target})", f"rm {STATE}")
    assert result["look"][target] == [0o777, NOBODY, False, []]
    assert result["look"][STATE][1:3] == [NOBODY, True]
    assert attached_prog_id(klab) == 0


def test_on_an_open_bpffs_xdpctl_makes_its_own_directory_which_others_cannot_touch(klab):
    """The same bpffs (1777), nobody there first: xdpctl makes the directory,
    root's and 0700, which nobody can neither rename (the sticky bit) nor open
    (to hold its lock); then detach removes it."""
    lock = ("import fcntl, os; fd = os.open('/sys/fs/bpf/xdpctl', os.O_RDONLY | os.O_DIRECTORY); "
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)")
    result = in_private_bpffs(klab, [("xdpctl", ["attach", klab.iface]),
                                     ("nobody", ["mv", STATE, "/sys/fs/bpf/moved"]),
                                     ("nobody", [sys.executable, "-c", lock]),
                                     ("xdpctl", ["status", "--json"]),
                                     ("xdpctl", ["detach", klab.iface])],
                              look=[STATE, "/sys/fs/bpf/moved", "/sys/fs/bpf"])
    attach, move, hold, status, detach = result["steps"]
    assert attach["rc"] == 0, attach["stderr"]
    assert move["rc"] != 0 and "Operation not permitted" in move["stderr"], move
    assert hold["rc"] != 0 and "Permission denied" in hold["stderr"], hold
    assert '"managed": true' in status["stdout"], status
    assert detach["rc"] == 0, detach["stderr"]
    assert result["look"][STATE] is None and result["look"]["/sys/fs/bpf/moved"] is None
    assert result["look"]["/sys/fs/bpf"][:2] == [0o1777, 0]
    assert attached_prog_id(klab) == 0


def test_a_bpffs_others_may_write_without_the_sticky_bit_is_refused(klab):
    """Mode 0777 (bpffs always mounts with the sticky bit; a chmod takes it
    away): anyone could rename root's directory away and put theirs in its
    place, whatever xdpctl checked before."""
    result = in_private_bpffs(klab, [("root", ["chmod", "0777", "/sys/fs/bpf"]),
                                     ("xdpctl", ["attach", klab.iface])], look=[STATE])
    chmod, attach = result["steps"]
    assert chmod["rc"] == 0, chmod
    step_error(attach, 1, "/sys/fs/bpf is writable by others (mode 0777) without the sticky bit",
               "mount -t bpf -o mode=0700 bpf /sys/fs/bpf")
    assert result["look"][STATE] is None
    assert attached_prog_id(klab) == 0
