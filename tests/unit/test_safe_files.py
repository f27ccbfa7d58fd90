"""xdpctl/safe_files.py, the one way xdpctl opens a file a user names: every
kind of entry at a path is read (a regular file) or refused in one line,
never followed (a link), never blocked on (a FIFO); writes are whole, with
exactly their mode, and never go through a link. No root: the attacker's
side (an unprivileged user swapping files) is in
tests/kernel/test_guarantees_files.py.
"""

from __future__ import annotations

import os
import socket
import stat

import pytest

from xdpctl import safe_files
from xdpctl.errors import BadInput
from xdpctl.rules.config_file import load

GOOD = '[interfaces.eth0]\npolicy = "deny"\n'


def make(tmp_path, kind: str) -> str:
    """A path in tmp_path holding an entry of kind."""
    target = tmp_path / "target.toml"
    target.write_text(GOOD)
    target.chmod(0o600)
    path = tmp_path / f"{kind}.toml"
    if kind == "regular":
        return str(target)
    if kind == "link":
        path.symlink_to(target)
    elif kind == "dangling-link":
        path.symlink_to(tmp_path / "nothing")
    elif kind == "link-to-dir":
        path.symlink_to(tmp_path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "missing":
        pass
    elif kind == "missing-parent":
        return str(tmp_path / "nodir" / "x.toml")
    elif kind == "file-as-parent":
        return str(target / "x.toml")
    elif kind == "device":
        return "/dev/null"
    return str(path)


KINDS = {
    "regular": None,
    "link": "is a symbolic link (to ",
    "dangling-link": "is a symbolic link (to ",
    "link-to-dir": "is a symbolic link (to ",
    "dir": "is a directory",
    "fifo": "is not a regular file",
    "socket": "is not a regular file",
    "device": "is not a regular file",
    "missing": "no such file",
    "missing-parent": "no such file",
    "file-as-parent": "no such file",
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_entry_is_read_or_refused_in_one_line(tmp_path, kind):
    path = make(tmp_path, kind)
    if KINDS[kind] is None:
        assert safe_files.read(path, 1 << 10).data == GOOD.encode()
        return
    with pytest.raises(BadInput) as err:
        safe_files.read(path, 1 << 10)
    message = str(err.value)
    assert message.startswith(path) or message.startswith(f"cannot read {path}"), message
    assert KINDS[kind] in message and "\n" not in message, message


def test_a_link_is_refused_even_to_a_good_file_and_names_its_target(tmp_path):
    """apply read a rule file through a link, so whoever could change the
    link chose the rules; now it names the file the link points to."""
    path = make(tmp_path, "link")
    with pytest.raises(safe_files.UnsafePath, match=rf"is a symbolic link \(to {tmp_path}/target.toml\).*"
                                                    "name the file itself"):
        load(path)
    assert load(str(tmp_path / "target.toml")).interfaces["eth0"].policy == "deny"


def test_the_size_limit_is_checked_before_reading(tmp_path):
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # sparse: reading it would take a while
    with pytest.raises(BadInput, match=r"larger than 1,024 bytes, the most xdpctl reads of a thing"):
        safe_files.read(str(path), 1024, what="a thing")


def test_the_callers_check_sees_the_descriptor(tmp_path):
    seen = []

    def check(st):
        seen.append(st)
        raise BadInput("refused by the caller")

    path = make(tmp_path, "regular")
    with pytest.raises(BadInput, match="refused by the caller"):
        safe_files.read(path, 1 << 10, check=check)
    assert (seen[0].st_dev, seen[0].st_ino) == (os.stat(path).st_dev, os.stat(path).st_ino)


@pytest.mark.parametrize("umask", [0, 0o077])
def test_a_write_replaces_a_link_never_writes_through_it_and_has_exactly_its_mode(tmp_path, umask):
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    path = tmp_path / "out.toml"
    path.symlink_to(victim)
    old = os.umask(umask)
    try:
        assert safe_files.write(str(path), "new\n", 0o640) is True
    finally:
        os.umask(old)
    assert not path.is_symlink() and path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert victim.read_text() == "untouched\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.toml", "victim"]


def test_an_exclusive_write_leaves_what_is_there(tmp_path):
    path = tmp_path / "default"
    path.write_text("XDPCTL_DETACH_ON_STOP=yes\n")
    assert safe_files.write(str(path), "XDPCTL_DETACH_ON_STOP=no\n", 0o644, exclusive=True) is False
    assert path.read_text() == "XDPCTL_DETACH_ON_STOP=yes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default"]


def test_a_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "adir").mkdir()
    with pytest.raises(BadInput, match=r"^cannot write .*/adir: Is a directory$"):
        safe_files.write(str(tmp_path / "adir"), "x")
    for path in (f"{tmp_path}/", f"{tmp_path}/.", f"{tmp_path}/adir/.."):
        with pytest.raises(BadInput, match=r"it names a directory; give a file name$"):
            safe_files.write(path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"] and not os.listdir(tmp_path / "adir")


def test_a_tree_refuses_a_link_below_its_root_and_removes_what_it_made(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "etc").symlink_to(outside)
    with safe_files.Tree(str(root)) as tree:
        with pytest.raises(safe_files.UnsafePath, match=f"{root}/etc is a symbolic link"):
            tree.dir("etc/systemd/system", create=0o755)
    (root / "etc").unlink()
    with safe_files.Tree(str(root)) as tree:
        assert tree.dir("etc/default") is None  # not made unless asked
        assert tree.dir("etc/default", create=0o755) is not None
        assert stat.S_IMODE(os.stat(root / "etc/default").st_mode) == 0o755
        tree.remove_created()
    assert os.listdir(root) == [] and os.listdir(outside) == []
