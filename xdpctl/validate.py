"""Validation of values a user types, shared by the CLI and the back ends.
Each failure is a BadInput with a message that says what is wrong."""

from __future__ import annotations

import ipaddress
import re

from .errors import BadInput

IFNAMSIZ = 16  # including the terminating NUL
# Bytes the kernel refuses in a name (dev_valid_name): '/', ':', and what its
# isspace() calls space, byte by byte (Latin-1's no-break space, 0xa0, too).
_NOT_IN_NAME = frozenset(b"/: \t\n\v\f\r\xa0\0")


def ifname(name: str) -> str:
    """The kernel's rules for an interface name (dev_valid_name), byte by
    byte, so that every name the kernel accepts is accepted, and one that is
    not UTF-8 (which no configuration file, JSON or message could carry
    exactly) is refused in one line."""
    raw = name.encode(errors="surrogateescape")
    if not raw:
        raise BadInput("an interface name cannot be empty")
    if len(raw) > IFNAMSIZ - 1:
        raise BadInput(f"interface name {name!r} is {len(raw)} bytes long; Linux allows at most {IFNAMSIZ - 1}")
    if raw in (b".", b"..") or not _NOT_IN_NAME.isdisjoint(raw):
        raise BadInput(f"{name!r} is not a valid interface name")
    if not utf8(name):
        raise BadInput(f"interface name {shown(name)} is not UTF-8, and xdpctl handles UTF-8 names only; "
                       "rename the interface (`ip link set dev OLD name NEW`)")
    return name


def utf8(name: str) -> bool:
    """Whether name is text (not bytes that are not UTF-8, as the kernel,
    argv and pyroute2 may hand over, decoded with surrogateescape)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(name: str) -> str:
    """name for a message, quoted: a byte that is not UTF-8 as \\xNN, a
    character that is not printable as Python writes it."""
    out = []
    for ch in name:
        if 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte surrogateescape kept
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch in "\\'":
            out.append("\\" + ch)
        else:
            out.append(ch if ch.isprintable() else repr(ch)[1:-1])
    return "'" + "".join(out) + "'"


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


LISTEN_EXAMPLES = "127.0.0.1:9435, [::1]:9435, or 0.0.0.0:9435 for every IPv4 address"


def listen_address(text: str) -> tuple[str, int]:
    """A --listen value, ADDRESS:PORT: an IPv4 address, or an IPv6 address in
    brackets ([::1]:9435), and a port from 1 to 65535. The address is a
    literal, never a host name, which may stand for several addresses or for
    another machine's: where a server listens is said exactly. Returns the
    address (without brackets) and the port."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        host = f"[{host}]" if sep else ""
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise BadInput(f"{text!r} is not ADDRESS:PORT; write {LISTEN_EXAMPLES}")
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise BadInput(f"{host!r} in {text!r} is not an IPv6 address; write {LISTEN_EXAMPLES}") from None
    elif ":" in host:
        raise BadInput(f"{text!r}: write an IPv6 address in brackets, as [{host}]:{port}")
    else:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise BadInput(f"{host!r} in {text!r} is not an IP address (a host name is not taken); "
                           f"write {LISTEN_EXAMPLES}") from None
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise BadInput(f"{port!r} in {text!r} is not a port from 1 to 65535")
    return host, int(port)
