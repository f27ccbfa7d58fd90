"""Files that xdpctl reads and writes on a user's behalf, opened safely: the
one way to do it (rule files for apply, `export -o`, the systemd unit and
/etc/default/xdpctl of `service install`, a capture for `gen --pcap`).

xdpctl runs as root on paths that others may reach, so:

- A file is opened once, never through a symbolic link in its last
  component (O_NOFOLLOW) and never blocking on a FIFO (O_NONBLOCK); what is
  checked (a regular file, its size, its owner and mode) is the descriptor
  that is then read, not the path, which whoever can rename entries in its
  directory could swap between a check and a read.
- A file is written whole or not at all: a new file made next to it
  (O_EXCL: never an existing one, never through a link), then renamed over
  it within the directory opened once, so the write and the rename happen in
  the same directory whatever is renamed meanwhile.
- A tree under a root (`service install --root DIR`) is walked one directory
  at a time from DIR, refusing a symbolic link anywhere below DIR: nothing is
  read or written outside it. Directories it makes are remembered, so a
  failure can remove them again.

The floor of the package (like errors and validate): every layer may use it.
Every failure is a BadInput whose message names the path and says why.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from dataclasses import dataclass
from typing import BinaryIO, Callable

from .errors import BadInput

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(BadInput):
    """A symbolic link where xdpctl opens a file or a directory for a user."""

    def __init__(self, path: str, target: str | None, fix: str):
        self.path, self.target = path, target
        to = f" (to {target})" if target is not None else ""
        super().__init__(f"{path} is a symbolic link{to}: xdpctl follows no link on a user's behalf, "
                         f"since whoever can change the link would choose what xdpctl opens; {fix}")


class NotPermitted(BadInput):
    """The system refused xdpctl access (permissions, a read-only filesystem)."""


def _os_error(message: str, exc: OSError) -> BadInput:
    """message, ending in why the system refused (exc), as the fitting error."""
    text = f"{message}: {exc.strerror or exc}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return NotPermitted(text)
    return BadInput(text)


@dataclass(frozen=True)
class Contents:
    data: bytes
    stat: os.stat_result  # of the descriptor the data was read from


def _link_refused(path: str, dir_fd: int | None, name: str, fix: str = "name the file itself") -> UnsafePath:
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        target = None
    return UnsafePath(path, target, fix)


def open_file(path: str, *, dir_fd: int | None = None, name: str | None = None,
              check: Callable[[os.stat_result], None] | None = None) -> BinaryIO:
    """The regular file at path, opened for reading, its descriptor checked.

    dir_fd and name: open name in that directory (path is then only what
    messages call it). check: the caller's own test of the descriptor's
    stat (an owner, a mode), raising BadInput, before anything is read."""
    name = path if name is None else name
    # A first look without opening, so that no device or FIFO is ever opened
    # in the ordinary case; what counts is the descriptor's stat below.
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        raise BadInput(f"{path}: no such file") from None
    except PermissionError:
        raise NotPermitted(f"{path}: cannot be read (permission denied)") from None
    except OSError as exc:
        raise _os_error(f"cannot read {path}", exc) from None
    _check_kind(path, st, dir_fd, name)
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        raise BadInput(f"{path}: no such file") from None
    except PermissionError:
        raise NotPermitted(f"{path}: cannot be read (permission denied)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a link since the look above
            raise _link_refused(path, dir_fd, name) from None
        if exc.errno == errno.ENXIO:  # a socket
            raise BadInput(f"{path} is not a regular file") from None
        raise _os_error(f"cannot read {path}", exc) from None
    try:
        st = os.fstat(fd)
        _check_kind(path, st, dir_fd, name)
        if check is not None:
            check(st)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_kind(path: str, st: os.stat_result, dir_fd: int | None, name: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise _link_refused(path, dir_fd, name)
    if stat.S_ISDIR(st.st_mode):
        raise BadInput(f"{path} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"{path} is not a regular file")


def read(path: str, max_bytes: int, *, what: str = "a file", dir_fd: int | None = None,
         name: str | None = None, check: Callable[[os.stat_result], None] | None = None) -> Contents:
    """The whole regular file at path (see open_file), refused before it is
    read when it is larger than max_bytes, the most xdpctl reads of what."""
    too_big = BadInput(f"{path} is larger than {max_bytes:,} bytes, the most xdpctl reads of {what}")
    with open_file(path, dir_fd=dir_fd, name=name, check=check) as f:
        st = os.fstat(f.fileno())
        if st.st_size > max_bytes:
            raise too_big
        try:
            data = f.read(max_bytes + 1)  # bounded, should it grow meanwhile
        except OSError as exc:
            raise _os_error(f"cannot read {path}", exc) from None
    if len(data) > max_bytes:
        raise too_big
    return Contents(data, st)


def write(path: str, data: str | bytes, mode: int = 0o600, *, dir_fd: int | None = None,
          name: str | None = None, exclusive: bool = False) -> bool:
    """Write a file whole or not at all, with exactly mode (0600 unless said).

    A new file is made next to path and renamed over it, so an entry at path
    (a file, or a link, which is replaced, never written through) changes in
    one step. dir_fd and name: write name in that directory. exclusive:
    leave an entry already at path as it is and return False."""
    raw = data.encode() if isinstance(data, str) else data
    opened = None
    if dir_fd is None:
        parent, name = os.path.split(path)
        if name in ("", ".", ".."):
            raise BadInput(f"cannot write {path}: it names a directory; give a file name")
        try:
            dir_fd = opened = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _write_error(path, exc) from None
    elif name is None:
        raise ValueError("write(dir_fd=...) needs the name in that directory")
    tmp = f".{name}.xdpctl-{secrets.token_hex(6)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                     dir_fd=dir_fd)
        try:
            os.fchmod(fd, mode)  # whatever the umask
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            try:
                os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                return False
            return True
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        tmp = None
        return True
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
        if opened is not None:
            os.close(opened)


def _write_error(path: str, exc: OSError) -> BadInput:
    if exc.errno == errno.ENOENT:
        return BadInput(f"cannot write {path}: {exc.strerror}; create its directory first")
    return _os_error(f"cannot write {path}", exc)


class Tree:
    """Directories under root, walked from root without following a link.

    root itself is the user's (a path they named, links and all); below it,
    a symbolic link is refused, so that nothing outside root is read,
    written or removed. Use as a context manager: it closes what it opened."""

    def __init__(self, root: str):
        self.root = root
        try:
            self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _os_error(f"cannot open {root}", exc) from None
        self._fds = [self._root_fd]
        self.created: list[tuple[int, str, str]] = []  # (parent fd, name, path), in order

    def __enter__(self) -> "Tree":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def path(self, relative: str) -> str:
        return os.path.join(self.root, relative.strip("/"))

    def dir(self, relative: str, create: int | None = None) -> int | None:
        """The directory root/relative, opened (its fd, closed with the tree);
        None when it does not exist and create (a mode) is not given."""
        fd = self._root_fd
        done = ""
        for part in [p for p in relative.split("/") if p]:
            done = f"{done}/{part}" if done else part
            try:
                fd = self._open_dir(fd, part, done)
            except FileNotFoundError:
                if create is None:
                    return None
                made = True
                try:
                    os.mkdir(part, create, dir_fd=fd)
                except FileExistsError:
                    made = False  # made meanwhile: checked as any other below
                except OSError as exc:
                    raise _os_error(f"cannot create {self.path(done)}", exc) from None
                else:
                    self.created.append((fd, part, self.path(done)))
                fd = self._open_dir(fd, part, done)
                if made:
                    os.fchmod(fd, create)  # whatever the umask
        return fd

    def _open_dir(self, parent: int, part: str, done: str) -> int:
        try:
            fd = os.open(part, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            raise
        except OSError as exc:
            path = self.path(done)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                if stat.S_ISLNK(os.stat(part, dir_fd=parent, follow_symlinks=False).st_mode):
                    raise _link_refused(path, parent, part, f"xdpctl works under {self.root} only through "
                                        "real directories: replace the link with a directory") from None
                raise BadInput(f"{path} is not a directory; xdpctl needs one there") from None
            raise _os_error(f"cannot open {path}", exc) from None
        self._fds.append(fd)
        return fd

    def remove_created(self) -> None:
        """Remove the directories this tree made (if still empty), newest first."""
        for parent, name, _ in reversed(self.created):
            try:
                os.rmdir(name, dir_fd=parent)
            except OSError:
                pass
        self.created = []


def open_stream(path: str, mode: int = 0o600) -> BinaryIO:
    """A file to write as it goes (a capture that grows until Ctrl-C, and
    that a killed xdpctl leaves readable up to its last record): opened
    once, never through a link (O_NOFOLLOW), never blocking (O_NONBLOCK);
    the descriptor must be a regular file (not a FIFO or a device), owned by
    this user or root, and is emptied only then."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                     mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"cannot write {path}: it is a symbolic link, which xdpctl never writes "
                             "through; name the file itself") from None
        raise _write_error(path, exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"cannot write {path}: it is not a regular file; name a file")
        if st.st_uid not in (0, os.geteuid()):
            raise UnsafePath(f"cannot write {path}: it belongs to uid {st.st_uid}; remove it or name another file")
        os.ftruncate(fd, 0)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb")
