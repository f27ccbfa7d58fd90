"""Validation of values a user types, shared by the CLI and the back ends.
Each failure is a BadInput with a message that says what is wrong."""

from __future__ import annotations

from .errors import BadInput

IFNAMSIZ = 16  # including the terminating NUL


def ifname(name: str) -> str:
    """The kernel's rules for an interface name (dev_valid_name)."""
    raw = name.encode(errors="surrogateescape")
    if not raw:
        raise BadInput("an interface name cannot be empty")
    if len(raw) > IFNAMSIZ - 1:
        raise BadInput(f"interface name {name!r} is {len(raw)} bytes long; Linux allows at most {IFNAMSIZ - 1}")
    if name in (".", "..") or "/" in name or ":" in name or any(c.isspace() for c in name):
        raise BadInput(f"{name!r} is not a valid interface name")
    return name


def netns(name: str) -> str:
    """A --netns value: an `ip netns` name, or the path of a namespace file
    (/proc/PID/ns/net). "No namespace" is None, never a string: an empty or
    blank name (an unset shell variable, `--netns "$NS"`) is refused rather
    than read as the current namespace, which is usually the host's."""
    if not name.strip():
        raise BadInput(f"{name!r} names no network namespace; give a name from `ip netns list` "
                       "(or leave --netns out to act in the current namespace)")
    if name in (".", ".."):
        raise BadInput(f"{name!r} is not a network namespace name; `ip netns list` lists them")
    return name
