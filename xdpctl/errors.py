"""Typed errors. Back ends raise these with a message that says what is wrong
and what to do; xdpctl/cli/__init__.py alone turns them into one line on stderr and an
exit code. Nothing else in xdpctl prints an error or calls sys.exit.
"""

from __future__ import annotations


class XdpctlError(Exception):
    """An error meant for the user: its str() is the whole message."""

    exit_code = 1


class BadInput(XdpctlError):
    """A value given by the user is invalid. Nothing was changed."""

    exit_code = 2


class InterfaceNotFound(XdpctlError):
    def __init__(self, ifname: str, where: str = ""):
        ns = f" in network namespace {where}" if where else ""
        super().__init__(f"no interface named {ifname!r}{ns}; `ip link` lists them")


class InterfaceGone(XdpctlError):
    def __init__(self, ifname: str):
        super().__init__(
            f"interface {ifname} is gone; xdpctl removed the state it kept for it"
        )


class ForeignProgram(XdpctlError):
    """The interface carries an XDP program that xdpctl did not load."""

    def __init__(self, ifname: str, prog_id: int, prog_name: str, hint: str):
        super().__init__(
            f"{ifname} already carries XDP program {prog_id} ({prog_name}), "
            f"not xdpctl's; {hint}"
        )
        self.prog_id = prog_id


class NotManaged(XdpctlError):
    def __init__(self, ifname: str):
        super().__init__(
            f"xdpctl manages no program on {ifname}; `xdpctl status` shows what is attached"
        )


class ProgramChanged(XdpctlError):
    """The compare-and-swap failed: the program was replaced behind our back."""

    def __init__(self, ifname: str):
        super().__init__(
            f"the XDP program on {ifname} changed while xdpctl was working; "
            "nothing was replaced. Check `xdpctl status` and try again"
        )


class StateVersion(XdpctlError):
    """xdpctl's state for an interface was written by an xdpctl of another
    ABI version: this one cannot read its maps, so it touches none of it."""

    def __init__(self, ifname: str, found: int, expected: int):
        super().__init__(
            f"the state xdpctl keeps for {ifname} was written by an xdpctl with state ABI version {found}; "
            f"this xdpctl reads version {expected}, so it leaves {ifname} and its program alone; "
            "use the xdpctl that attached it"
        )
        self.found = found


class ModeError(XdpctlError):
    """The requested XDP mode cannot be used on this interface."""


class MissingCapability(XdpctlError):
    def __init__(self, action: str, caps: str):
        fix = "run xdpctl as root" + ("" if caps == "root" else f" or grant {caps}")
        super().__init__(f"{action} needs {caps}; {fix}")


class BpffsMissing(XdpctlError):
    pass


class BccMissing(XdpctlError):
    pass


class HeadersMissing(XdpctlError):
    pass


class CompileFailed(XdpctlError):
    """Clang rejected the program. detail holds the compiler's output."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


class VerifierRejected(XdpctlError):
    """The kernel's verifier rejected the program. detail holds its log."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


class UnsupportedKernel(XdpctlError):
    """The running kernel is older than the oldest xdpctl supports."""

    def __init__(self, release: str, minimum: str):
        super().__init__(
            f"Linux {release} is older than {minimum}, the oldest kernel xdpctl supports; "
            f"boot Linux {minimum} or newer (docs/install.md, \"Kernels\", says why)"
        )
        self.release = release
        self.minimum = minimum


class KernelError(XdpctlError):
    """A kernel call failed in a way no more specific error describes."""
