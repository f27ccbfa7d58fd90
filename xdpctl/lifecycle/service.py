"""xdpctl.service: the systemd unit that applies /etc/xdpctl/xdpctl.toml at
boot, installing and removing it, and what it runs when it stops.

The unit ships in the package (xdpctl/systemd/). Installing writes it with
the absolute path of the xdpctl that runs the install, then enables it with
systemctl (`systemctl --root DIR` for a staging tree). A failed install puts
back what was there. Stopping the unit detaches the interfaces the file
names only when /etc/default/xdpctl says XDPCTL_DETACH_ON_STOP=yes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInput, ForeignProgram, InterfaceGone, InterfaceNotFound, NotManaged, XdpctlError

UNIT = "xdpctl.service"
UNIT_DIR = "/etc/systemd/system"
CONFIG = "/etc/xdpctl/xdpctl.toml"
ENV_FILE = "/etc/default/xdpctl"
WANTED_BY = "multi-user.target"
PLACEHOLDER = "@XDPCTL@"
SHIPPED = Path(__file__).resolve().parent.parent / "systemd"


def template() -> str:
    return (SHIPPED / UNIT).read_text()


def exec_path(path: str) -> str:
    """path as the executable of a systemd command line: quoted when it must
    be, with % doubled (specifiers; systemd expands no $VARIABLE there)."""
    if re.search(r"[\x00-\x1f\x7f\\\"']", path):
        raise BadInput(f"{path!r}: systemd runs no executable whose path holds quotes, backslashes or "
                       "control characters; give another with --xdpctl PATH")
    word = path.replace("%", "%%")
    return word if re.fullmatch(r"[A-Za-z0-9/._+,:=@%$-]+", word) else f'"{word}"'


def render(xdpctl: str) -> str:
    """The unit, running the xdpctl at the absolute path xdpctl."""
    return template().replace(PLACEHOLDER, exec_path(xdpctl))


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


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise XdpctlError(f"cannot read {path}: {exc.strerror}; installing the unit needs root") from None


def _write(path: str, text: str) -> None:
    from ..safe_files import write

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write(path, text, mode=0o644)
    except (OSError, BadInput) as exc:
        why = f"cannot write {path}: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
        raise XdpctlError(f"{why}; installing the unit needs root (or --root DIR to write under DIR)") from None


def _put_back(path: str, before: str | None) -> None:
    try:
        if before is None:
            os.remove(path)
        else:
            _write(path, before)
    except (OSError, XdpctlError):
        pass  # the first error is the one reported


@dataclass
class Installed:
    unit_path: str
    xdpctl: str
    enabled: bool
    env_path: str | None = None  # written now (it is never overwritten)
    notes: list[str] = field(default_factory=list)


def _check_root(root: str) -> str:
    if not os.path.isdir(root):
        raise BadInput(f"--root {root}: no such directory")
    return os.path.abspath(root)


def install(root: str = "/", enable: bool = True, xdpctl: str | None = None) -> Installed:
    root = _check_root(root)
    exe = running_xdpctl(xdpctl, root)
    text = render(exe)
    unit_path = _under(root, f"{UNIT_DIR}/{UNIT}")
    env_path = _under(root, ENV_FILE)
    unit_before = _read(unit_path)
    env_written = None
    try:
        _write(unit_path, text)
        if not os.path.exists(env_path):
            _write(env_path, (SHIPPED / "xdpctl.default").read_text())
            env_written = env_path
        undone = ("nothing was installed; fix that and try again, or use --no-enable "
                  f"and run `xdpctl apply {CONFIG}` at boot another way")
        if _live(root):
            systemctl(root, ["daemon-reload"], undone)
        if enable:
            systemctl(root, ["enable", UNIT], undone)
    except BaseException:
        _put_back(unit_path, unit_before)
        if env_written:
            _put_back(env_written, None)
        raise
    result = Installed(unit_path, exe, enable, env_written)
    if not os.path.exists(_under(root, CONFIG)):
        result.notes.append(f"{CONFIG} does not exist yet, so the service will not start until it does "
                            f"(`mkdir -p {os.path.dirname(CONFIG)} && xdpctl export -o {CONFIG}` writes what runs now)")
    return result


@dataclass
class Uninstalled:
    unit_path: str
    removed: bool


def uninstall(root: str = "/") -> Uninstalled:
    """Disable (and, on the running system, stop) the unit and remove it.
    Stopping does what XDPCTL_DETACH_ON_STOP says; the configuration and
    /etc/default/xdpctl stay."""
    root = _check_root(root)
    unit_path = _under(root, f"{UNIT_DIR}/{UNIT}")
    if not os.path.exists(unit_path):
        return Uninstalled(unit_path, False)
    if shutil.which("systemctl"):
        systemctl(root, ["disable", *(["--now"] if _live(root) else []), UNIT], f"{unit_path} is still there")
    else:  # what `systemctl disable` would remove
        wants = _under(root, f"{UNIT_DIR}/{WANTED_BY}.wants/{UNIT}")
        if os.path.islink(wants):
            os.remove(wants)
    try:
        os.remove(unit_path)
    except OSError as exc:
        raise XdpctlError(f"cannot remove {unit_path}: {exc.strerror}; removing the unit needs root") from None
    if _live(root):
        systemctl(root, ["daemon-reload"], f"{unit_path} is removed; run `systemctl daemon-reload`")
    return Uninstalled(unit_path, True)


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
