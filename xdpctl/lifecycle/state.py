"""What xdpctl owns on the machine, described in one place.

Everything lives on bpffs, so it has the lifetime of what it describes (an XDP
attachment does not survive a reboot, and neither does bpffs):

    /sys/fs/bpf/xdpctl/                 the root (0700); its flock serialises
      ns<netns inode>/                  xdpctl processes that change anything
        if<ifindex>/                    one attachment (0700)
          prog                          the program xdpctl attached
          counters                      per-CPU (class, verdict) counters
          meta                          struct xdpctl_meta: what, how, when

The netns inode keeps two namespaces' eth0 apart. An attachment is xdpctl's
only while the interface still carries the program whose id meta records; an
interface that reuses the ifindex is never claimed.

Whoever makes these directories owns them, and the owner may rename what is
in them, or hold the lock. bpffs mounted as `mount -t bpf bpf /sys/fs/bpf`
does (mode 1777) lets any user make /sys/fs/bpf/xdpctl first. So xdpctl makes
its directories itself, opens them without following a link, and uses one
only if it is a directory owned by root (or by the user running xdpctl); one
that is not is refused in one line that says what to remove. A bpffs that
others may write without the sticky bit (which keeps them from renaming
root's entries) is refused too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Callable, Iterator

from ..datapath import contract
from ..kernel import libbpf
from ..kernel.bpffs import BPFFS, ensure_mounted
from ..errors import KernelError, MissingCapability, XdpctlError

STATE_ROOT = os.path.join(BPFFS, "xdpctl")
LOCK_TIMEOUT_S = 120.0


class Attachment:
    """The pinned state of one interface in one network namespace."""

    def __init__(self, root: Path, netns_ino: int, ifindex: int):
        self.netns_ino = netns_ino
        self.ifindex = ifindex
        self.path = root / f"ns{netns_ino}" / f"if{ifindex}"

    def __repr__(self) -> str:
        return f"Attachment({self.path})"

    def pin(self, name: str) -> str:
        return str(self.path / name)

    def exists(self) -> bool:
        return self.path.is_dir()

    def pins(self) -> list[str]:
        try:
            return sorted(os.listdir(self.path))
        except FileNotFoundError:
            return []

    def read_meta(self) -> contract.Meta | None:
        """The recorded meta, or None when there is none (a half-made state).

        Meta written by an xdpctl of another ABI version is returned as read:
        only its abi_version (always the first field) means anything, and
        xdpctl/lifecycle/target.py refuses to act on it."""
        try:
            with libbpf.opened(self.pin(contract.PIN_META)) as fd:
                # The map's own value size: another ABI's meta may be larger
                # than this one's buffer would hold.
                raw = libbpf.map_lookup(fd, b"\0\0\0\0", libbpf.map_info(fd).value_size)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _state_error(exc, f"reading {self.pin(contract.PIN_META)}") from exc
        if raw is None:
            return None
        meta = contract.Meta.unpack(raw[: contract.META.size].ljust(contract.META.size, b"\0"))
        return meta if meta.abi_version else None

    def write_meta(self, meta: contract.Meta) -> None:
        try:
            with libbpf.opened(self.pin(contract.PIN_META)) as fd:
                libbpf.map_update(fd, b"\0\0\0\0", meta.pack())
        except OSError as exc:
            raise _state_error(exc, f"writing {self.pin(contract.PIN_META)}") from exc

    def remove(self) -> None:
        """Unpin everything (maps and program go when nothing else holds them)."""
        shutil.rmtree(self.path, ignore_errors=True)


class LockHeld(XdpctlError):
    """Another xdpctl held the state lock for longer than the wait allowed."""


def _state_error(exc: OSError, what: str) -> XdpctlError:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return MissingCapability(what, "CAP_BPF (and root's access to the pins)")
    return KernelError(f"{what} failed: {exc.strerror or exc}")


MOUNT_HINT = f"mount -t bpf -o mode=0700 bpf {BPFFS}"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class StateNotOurs(XdpctlError):
    """Something xdpctl did not make sits where its state belongs."""


def _trusted(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _refuse(path: Path, why: str, remove: str) -> StateNotOurs:
    return StateNotOurs(f"{path} {why}: xdpctl did not make it, and keeps its state only in directories "
                        f"root made, which no one else can rename or lock; remove it (`{remove}`), and "
                        f"let only root write to bpffs (`{MOUNT_HINT}`)")


def _open_dir(parent_fd: int, name: str, path: Path, make: bool) -> int | None:
    """The directory name in parent_fd, made first if make (mode 0700),
    opened without following a link and checked: a directory owned by root
    (or this user). None when it is not there (and make is false, or another
    xdpctl pruned it meanwhile)."""
    if make:
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
        except PermissionError as exc:
            raise MissingCapability(f"creating {path}", "root (or write access to bpffs)") from exc
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise MissingCapability(f"reading {path}", "root") from exc
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                target = f" (to {os.readlink(name, dir_fd=parent_fd)})"
                raise _refuse(path, f"is a symbolic link{target}", f"rm {path}") from None
            except OSError:
                raise _refuse(path, "is not a directory", f"rm {path}") from None
        raise KernelError(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not _trusted(st.st_uid):
            raise _refuse(path, f"is owned by uid {st.st_uid}, not by root", f"rm -r {path}")
        if make and stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)  # whatever the umask (or an older xdpctl) left: root's alone
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_parent(fd: int, path: Path) -> None:
    """Where the root is made (bpffs): others may write there only with the
    sticky bit, which keeps them from renaming or removing root's entries."""
    st = os.fstat(fd)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise StateNotOurs(f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}) without the "
                           "sticky bit, so anyone could rename xdpctl's state there; "
                           f"`chmod 0700 {path}`, or mount it as `{MOUNT_HINT}`")


class State:
    def __init__(self, root: str = STATE_ROOT, namespace: Callable[[], int] | None = None):
        """namespace: the inode of the network namespace this xdpctl acts in,
        whose directory its lock marks as being changed (looking())."""
        self.root = Path(root)
        self._held = False
        self._namespace = namespace

    def _open_root(self, make: bool) -> int | None:
        """The root, checked (see _open_dir); None when it is not there."""
        try:
            parent = os.open(self.root.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if make:
                raise KernelError(f"cannot make {self.root}: {self.root.parent} does not exist") from None
            return None
        except PermissionError as exc:
            raise MissingCapability(f"reading {self.root}", "root") from exc
        try:
            if make:
                _check_parent(parent, self.root.parent)
            return _open_dir(parent, self.root.name, self.root, make)
        finally:
            os.close(parent)

    def check(self) -> bool:
        """Whether the root is there; StateNotOurs when it is not xdpctl's.
        Readers call it before they trust anything under the root."""
        fd = self._open_root(make=False)
        if fd is None:
            return False
        os.close(fd)
        return True

    def ensure_root(self) -> None:
        if self.root.parent == Path(BPFFS):
            ensure_mounted(BPFFS)
        while True:
            fd = self._open_root(make=True)
            if fd is not None:
                os.close(fd)
                return
            # Another xdpctl pruned the root between making and opening it
            # (it holds the lock, this one does not yet): make it again.

    def attachment(self, netns_ino: int, ifindex: int) -> Attachment:
        self.check()
        return Attachment(self.root, netns_ino, ifindex)

    def create(self, att: Attachment) -> None:
        """Make att's directories (its own must not exist yet), each checked
        as the root is: made by xdpctl, root's, 0700, no link."""
        self.ensure_root()
        fds = [self._open_root(make=True)]
        try:
            if fds[0] is None:
                raise KernelError(f"{self.root} vanished while xdpctl held its lock")
            ns = _open_dir(fds[0], att.path.parent.name, att.path.parent, make=True)
            if ns is None:
                raise KernelError(f"{att.path.parent} vanished while xdpctl held its lock")
            fds.append(ns)
            os.mkdir(att.path.name, 0o700, dir_fd=ns)  # FileExistsError: never reuse one
            own = _open_dir(ns, att.path.name, att.path, make=True)
            if own is not None:
                fds.append(own)
        finally:
            for fd in fds:
                if fd is not None:
                    os.close(fd)

    def attachments(self, netns_ino: int | None = None) -> list[Attachment]:
        """Every recorded attachment, in one namespace or in all."""
        found = []
        if not self.check():
            return []
        try:
            ns_dirs = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        except PermissionError as exc:
            raise MissingCapability(f"reading {self.root}", "root") from exc
        for ns in ns_dirs:
            if not ns.startswith("ns") or not ns[2:].isdigit():
                continue
            ino = int(ns[2:])
            if netns_ino is not None and ino != netns_ino:
                continue
            try:
                entries = sorted(os.listdir(self.root / ns))
            except FileNotFoundError:
                continue  # pruned meanwhile by an xdpctl holding the lock
            for entry in entries:
                if entry.startswith("if") and entry[2:].isdigit():
                    found.append(Attachment(self.root, ino, int(entry[2:])))
        return found

    @contextlib.contextmanager
    def looking(self, netns_ino: int) -> Iterator[bool]:
        """Whether another xdpctl is changing the state of that namespace
        (it holds its lock: True, at once), else False, with a shared lock on
        the namespace's directory for the block, so that no change starts
        there meanwhile. How a reader tells a change in flight (its pending
        mark, its half-made directory) from one a killed xdpctl left; a
        change in another namespace does not count. Never wait for the state
        lock inside the block: a change holds it while it waits for this one."""
        if self._held:
            yield False
            return
        try:
            fd = os.open(self.root / f"ns{netns_ino}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield False  # no state there
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                busy = False
            except BlockingIOError:
                busy = True
            yield busy
        finally:
            os.close(fd)

    def _lock_namespace(self, deadline: float) -> int | None:
        """Mark this namespace's state as being changed (looking()): an
        exclusive flock on its directory, once the state lock is held. Readers
        hold it shared only while they look."""
        if self._namespace is None:
            return None
        ns_dir = self.root / f"ns{self._namespace()}"
        ns_dir.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(ns_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockHeld(f"another xdpctl process kept looking at {ns_dir}; is one stuck?") from None
                time.sleep(0.01)

    @contextlib.contextmanager
    def try_lock(self) -> Iterator[bool]:
        """The lock if no other xdpctl holds it (True, held for the block),
        else False at once. Without a root there is nothing to look at, and
        nothing is made."""
        if not self._held and not self.root.is_dir():
            yield True
            return
        acquired = False
        try:
            with self.lock(timeout=0):
                acquired = True
                yield True
        except LockHeld:
            if acquired:
                raise
            yield False

    @contextlib.contextmanager
    def lock(self, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Serialise changes: one xdpctl at a time changes anything on bpffs.

        The root is removed once nothing is left in it (prune), so a waiter may
        wake holding the lock of a directory that is gone: it then retries on
        the one now at the path.
        """
        if self._held:  # re-entrant: an operation may call another one
            yield
            return
        deadline = time.monotonic() + timeout
        if self.root.parent == Path(BPFFS):
            ensure_mounted(BPFFS)
        while True:
            fd = self._open_root(make=True)  # made, or checked, and never through a link
            if fd is None:
                continue  # pruned meanwhile: make it again
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise LockHeld(
                                f"another xdpctl process held {self.root} for {timeout:.0f} s; "
                                "is one stuck? (`fuser -v` on the directory shows it)"
                            ) from None
                        time.sleep(0.02)
                try:
                    current = os.stat(self.root, follow_symlinks=False).st_ino
                except FileNotFoundError:
                    current = None
                if current != os.fstat(fd).st_ino:
                    continue  # locked a root that was pruned meanwhile
                ns_fd = self._lock_namespace(max(deadline, time.monotonic() + 5))
                self._held = True
                try:
                    yield
                finally:
                    self._held = False
                    if ns_fd is not None:
                        os.close(ns_fd)
                    self.prune()
                return
            finally:
                os.close(fd)

    def prune(self) -> None:
        """Remove empty namespace directories, then the root if it is empty
        (lock() does, before it lets go: nothing of xdpctl's stays behind)."""
        for entry in os.listdir(self.root) if self.root.is_dir() else []:
            with contextlib.suppress(OSError):
                (self.root / entry).rmdir()
        with contextlib.suppress(OSError):
            self.root.rmdir()


@contextlib.contextmanager
def scratch_dir(tag: str = "scratch") -> Iterator[str]:
    """A private directory on bpffs for programs built only to be run
    through BPF_PROG_TEST_RUN (tests, benchmarks): the rule engine's tables
    must be pinned to be compiled against. Removed afterwards, pins and all."""
    import secrets

    path = os.path.join(BPFFS, f"xdpctl-{tag}-{os.getpid()}-{secrets.token_hex(3)}")
    os.mkdir(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
