"""xdpctl.service: the systemd unit that applies /etc/xdpctl/xdpctl.toml at
boot, installing and removing it, and what it runs when it stops; and
xdpctl-exporter.service, the Prometheus exporter as a unit (--exporter).

The units ship in the package (xdpctl/systemd/). Installing writes them with
the absolute path of the xdpctl that runs the install, then enables them with
systemctl (`systemctl --root DIR` for a staging tree). A failed install puts
back what was there. Stopping xdpctl.service detaches the interfaces the
file names only when /etc/default/xdpctl says XDPCTL_DETACH_ON_STOP=yes.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import safe_files
from ..errors import BadInput, ForeignProgram, InterfaceGone, InterfaceNotFound, NotManaged, XdpctlError

UNIT = "xdpctl.service"
EXPORTER_UNIT = "xdpctl-exporter.service"
UNIT_DIR = "/etc/systemd/system"
CONFIG = "/etc/xdpctl/xdpctl.toml"
ENV_FILE = "/etc/default/xdpctl"
EXPORTER_ENV_FILE = "/etc/default/xdpctl-exporter"
WANTED_BY = "multi-user.target"
PLACEHOLDER = "@XDPCTL@"
SHIPPED = Path(__file__).resolve().parent.parent / "systemd"
# Each unit and its environment file (shipped as <unit name>.default).
UNITS = {UNIT: ENV_FILE, EXPORTER_UNIT: EXPORTER_ENV_FILE}


def template(unit: str = UNIT) -> str:
    return (SHIPPED / unit).read_text()


def shipped_env(unit: str) -> str:
    return (SHIPPED / unit.replace(".service", ".default")).read_text()


def exec_path(path: str) -> str:
    """path as the executable of a systemd command line: quoted when it must
    be, with % doubled (specifiers; systemd expands no $VARIABLE there)."""
    if re.search(r"[\x00-\x1f\x7f\\\"']", path):
        raise BadInput(f"{path!r}: systemd runs no executable whose path holds quotes, backslashes or "
                       "control characters; give another with --xdpctl PATH")
    word = path.replace("%", "%%")
    return word if re.fullmatch(r"[A-Za-z0-9/._+,:=@%$-]+", word) else f'"{word}"'


def render(xdpctl: str, unit: str = UNIT) -> str:
    """The unit, running the xdpctl at the absolute path xdpctl."""
    return template(unit).replace(PLACEHOLDER, exec_path(xdpctl))


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def running_xdpctl(given: str | None = None, root: str = "/") -> str:
    """The absolute path of the xdpctl the unit should run: given (a path on
    the system under root), else the one running now, else the one on PATH."""
    if given is not None:
        if root != "/" and not os.path.isabs(given):
            raise BadInput(f"--xdpctl {given}: give the absolute path the installed system will run")
        path = os.path.abspath(given)
        if not _executable(_under(root, path)):
            where = f" under {root}" if root != "/" else ""
            raise BadInput(f"--xdpctl {given}: no executable file there{where}")
        return path
    argv0 = sys.argv[0]
    if os.path.basename(argv0) == "xdpctl" and _executable(argv0):
        return os.path.abspath(argv0)
    found = shutil.which("xdpctl")
    if found:
        return os.path.abspath(found)
    raise BadInput("cannot tell where the xdpctl executable is (run through `python -m xdpctl`?); "
                   "give it with --xdpctl PATH")


def _live(root: str) -> bool:
    """The unit goes to the running system, and systemd runs it."""
    return root == "/" and os.path.isdir("/run/systemd/system")


def systemctl(root: str, args: list[str], then: str) -> None:
    """Run systemctl (offline, on the tree under root, when root is not /).
    then: what to tell the user to do when it cannot run or fails."""
    exe = shutil.which("systemctl")
    words = ["systemctl"] + (["--root", root] if root != "/" else []) + args
    if exe is None:
        raise XdpctlError(f"systemctl is not installed, so `{' '.join(words)}` cannot run; {then}")
    proc = subprocess.run([exe, *words[1:]], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        why = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise XdpctlError(f"`{' '.join(words)}` failed: {why}; {then}")


UNIT_BYTES = 1 << 20  # the most xdpctl reads of a unit it is about to replace
NEEDS_ROOT = "installing the unit needs root (or --root DIR to write under DIR)"


def _before(unit_dir: int, unit_path: str, unit: str = UNIT) -> safe_files.Contents | None:
    """The unit there now, to put back if the install fails: read from the
    descriptor, never through a link (a masked unit is a link to /dev/null)."""
    if not _lexists(unit_dir, unit):
        return None
    try:
        return safe_files.read(unit_path, UNIT_BYTES, what="a unit file", dir_fd=unit_dir, name=unit)
    except safe_files.UnsafePath as exc:
        raise safe_files.UnsafePath(exc.path, exc.target, f"remove it first (a masked unit: `systemctl unmask "
                                    f"{unit}`)") from None


def _lexists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _failed(exc: BadInput) -> XdpctlError:
    """A file or directory xdpctl cannot use: a refusal (exit 1) saying what to do."""
    if isinstance(exc, safe_files.NotPermitted):
        return XdpctlError(f"{exc}; {NEEDS_ROOT}")
    return XdpctlError(str(exc))


@dataclass
class Installed:
    unit_path: str
    xdpctl: str
    enabled: bool
    env_path: str | None = None  # written now (it is never overwritten)
    notes: list[str] = field(default_factory=list)
    exporter_unit_path: str | None = None  # with --exporter
    exporter_env_path: str | None = None  # written now

    @property
    def units(self) -> list[str]:
        return [UNIT] + ([EXPORTER_UNIT] if self.exporter_unit_path else [])


def _check_root(root: str) -> str:
    if not os.path.isdir(root):
        raise BadInput(f"--root {root}: no such directory")
    return os.path.abspath(root)


def install(root: str = "/", enable: bool = True, xdpctl: str | None = None, exporter: bool = False) -> Installed:
    """Write xdpctl.service (and, with exporter, xdpctl-exporter.service),
    each environment file that is missing, and enable the units: all of it,
    or, when a step fails, nothing."""
    root = _check_root(root)
    exe = running_xdpctl(xdpctl, root)
    units = [UNIT, EXPORTER_UNIT] if exporter else [UNIT]
    texts = {unit: render(exe, unit) for unit in units}
    paths = {unit: _under(root, f"{UNIT_DIR}/{unit}") for unit in units}
    env_paths = {unit: _under(root, UNITS[unit]) for unit in units}
    # Every directory and file from root down is opened without following a
    # link: nothing outside root is read or written, and what a failure
    # puts back is exactly what was there (its bytes and its mode).
    with _tree(root) as tree:
        unit_dir = None
        written: list[tuple[str, safe_files.Contents | None]] = []  # units, and what was there before
        envs: list[tuple[int, str, str]] = []  # environment files written: (dir fd, name, path)
        try:
            unit_dir = tree.dir(UNIT_DIR, create=0o755)
            for unit in units:
                before = _before(unit_dir, paths[unit], unit)
                if safe_files.write(paths[unit], texts[unit], 0o644, dir_fd=unit_dir, name=unit):
                    written.append((unit, before))
            for unit in units:
                env_dir_name, env_name = os.path.split(UNITS[unit])
                env_dir = tree.dir(env_dir_name, create=0o755)
                # Never overwritten: the administrator's choices stay.
                if safe_files.write(env_paths[unit], shipped_env(unit), 0o644, dir_fd=env_dir, name=env_name,
                                    exclusive=True):
                    envs.append((env_dir, env_name, env_paths[unit]))
            undone = ("nothing was installed; fix that and try again, or use --no-enable "
                      f"and run `xdpctl apply {CONFIG}` at boot another way")
            if _live(root):
                systemctl(root, ["daemon-reload"], undone)
            if enable:
                systemctl(root, ["enable", *units], undone)
        except BaseException as exc:
            for unit, before in written:
                _put_back(unit_dir, unit, paths[unit], before)
            for env_dir, env_name, env_path in envs:
                _put_back(env_dir, env_name, env_path, None)
            tree.remove_created()
            if isinstance(exc, BadInput):
                raise _failed(exc) from None
            raise
    made = {path for _, _, path in envs}
    result = Installed(paths[UNIT], exe, enable, env_paths[UNIT] if env_paths[UNIT] in made else None,
                       exporter_unit_path=paths.get(EXPORTER_UNIT),
                       exporter_env_path=env_paths.get(EXPORTER_UNIT) if env_paths.get(EXPORTER_UNIT) in made
                       else None)
    if not os.path.exists(_under(root, CONFIG)):
        result.notes.append(f"{CONFIG} does not exist yet, so the service will not start until it does "
                            f"(`mkdir -p {os.path.dirname(CONFIG)} && xdpctl export -o {CONFIG}` writes what runs now)")
    return result


def _tree(root: str) -> safe_files.Tree:
    try:
        return safe_files.Tree(root)
    except BadInput as exc:
        raise _failed(exc) from None


def _put_back(dir_fd: int, name: str, path: str, before: safe_files.Contents | None) -> None:
    """Put what this install wrote back as it was: removed, or the bytes
    read before, with their mode."""
    try:
        if before is None:
            os.unlink(name, dir_fd=dir_fd)
        else:
            safe_files.write(path, before.data, stat.S_IMODE(before.stat.st_mode), dir_fd=dir_fd, name=name)
    except (OSError, BadInput):
        pass  # the first error is the one reported


@dataclass
class Uninstalled:
    unit_path: str
    removed: bool  # any unit
    removed_paths: list[str] = field(default_factory=list)  # each unit removed


def uninstall(root: str = "/") -> Uninstalled:
    """Disable (and, on the running system, stop) xdpctl.service and
    xdpctl-exporter.service, those that are there, and remove them.
    Stopping does what XDPCTL_DETACH_ON_STOP says; the configuration and
    the environment files stay. Nothing outside root is removed: the units'
    directory is opened without following a link."""
    root = _check_root(root)
    unit_path = _under(root, f"{UNIT_DIR}/{UNIT}")
    removed = []
    with _tree(root) as tree:
        try:
            unit_dir = tree.dir(UNIT_DIR)
        except BadInput as exc:
            raise _failed(exc) from None
        present = [unit for unit in UNITS if unit_dir is not None and _lexists(unit_dir, unit)]
        if not present:
            return Uninstalled(unit_path, False)
        if shutil.which("systemctl"):
            there = [_under(root, f"{UNIT_DIR}/{unit}") for unit in present]
            systemctl(root, ["disable", *(["--now"] if _live(root) else []), *present],
                      f"{' and '.join(there)} {'is' if len(there) == 1 else 'are'} still there")
        else:  # what `systemctl disable` would remove
            try:
                wants_dir = tree.dir(f"{UNIT_DIR}/{WANTED_BY}.wants")
            except BadInput as exc:
                raise _failed(exc) from None
            for unit in present:
                if wants_dir is not None and _is_link(wants_dir, unit):
                    os.unlink(unit, dir_fd=wants_dir)
        for unit in present:
            path = _under(root, f"{UNIT_DIR}/{unit}")
            try:
                os.unlink(unit, dir_fd=unit_dir)
            except OSError as exc:
                raise XdpctlError(f"cannot remove {path}: {exc.strerror}; removing the unit needs root") from None
            removed.append(path)
    if _live(root):
        systemctl(root, ["daemon-reload"], f"{', '.join(removed)} removed; run `systemctl daemon-reload`")
    return Uninstalled(unit_path, True, removed)


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def stop_hook(app, path: str, detach: bool) -> Iterator[str]:
    """What the unit runs when it stops: with detach, remove xdpctl's program
    from each interface the file names, one line each. An interface that is
    gone, or carries no program of xdpctl's, is left as it is."""
    if not detach:
        yield f"XDPCTL_DETACH_ON_STOP is not yes ({ENV_FILE}): xdpctl's programs stay attached"
        return
    from ..rules.config_file import load
    from .detach import detach as detach_one

    for name in load(path).interfaces:
        try:
            result = detach_one(app, name)
        except (InterfaceNotFound, InterfaceGone, NotManaged, ForeignProgram) as exc:
            yield f"{name}: skipped: {exc}"
            continue
        yield f"{name}: {result.note}" if result.note else f"{name}: detached prog {result.prog_id}"
