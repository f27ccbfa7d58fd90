"""The only module that imports BCC: compiling bpf/ and loading the result.

BCC writes clang's diagnostics and the verifier's log straight to the
process's stdout and stderr. They are captured here, so that a user sees one
line saying what went wrong (with the verifier's own message), and the rest
only with --verbose.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import BccMissing, CompileFailed, HeadersMissing, MissingCapability, ModeError, VerifierRejected
from .headers import KernelHeaders, find_kernel_headers
from .build import BuildRequest

BCC_PACKAGES = (
    "apt install python3-bpfcc (Debian/Ubuntu), dnf install python3-bcc (Fedora), "
    "pacman -S python-bcc (Arch); in a virtual environment, create it with --system-site-packages"
)


def bcc_missing_message(impostor: str | None = None) -> str:
    """What to do when BCC cannot be used. impostor: where the `bcc` that
    Python did import lives, when it is not BCC (it has no BPF)."""
    if impostor is not None:
        return (f"the 'bcc' module Python imports ({impostor}) is the unrelated PyPI package named bcc, "
                f"not BCC: run pip uninstall bcc, then install BCC's Python bindings from your "
                f"distribution: {BCC_PACKAGES}")
    return ("BCC's Python bindings are not importable; install them from your distribution: "
            f"{BCC_PACKAGES} (the PyPI package named 'bcc' is an unrelated project)")


def _import_bcc():
    try:
        import bcc  # noqa: PLC0415 - the fence: BCC is imported here and nowhere else
    except ImportError as exc:
        raise BccMissing(bcc_missing_message()) from exc
    if not hasattr(bcc, "BPF"):
        raise BccMissing(bcc_missing_message(getattr(bcc, "__file__", None) or repr(bcc)))
    return bcc


def bcc_available() -> bool:
    try:
        _import_bcc()
    except BccMissing:
        return False
    return True


@contextlib.contextmanager
def _captured_output() -> Iterator[list[str]]:
    """Redirect fds 1 and 2 (where libbcc and clang write) into a buffer."""
    out: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))


def verifier_summary(log: str) -> str:
    """The verifier's reason, which is the last line before its statistics."""
    lines = [l.strip() for l in log.splitlines() if l.strip()]
    for i, line in enumerate(lines):
        if line.startswith("processed ") and " insns" in line:
            for prev in reversed(lines[:i]):
                if not re.match(r"^\d+: \(", prev) and not prev.startswith(";"):
                    return prev
            break
    for line in reversed(lines):
        if not line.startswith(("HINT", "Traceback", "bpf: Failed to load")):
            return line
    return "no verifier log"


def compile_error_summary(output: str) -> str:
    for line in output.splitlines():
        if " error: " in line or line.startswith("error:"):
            return re.sub(r"^/virtual/main\.c", "bpf source", line.strip())
    return "clang reported no error line; run with --verbose for its output"


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """Set variables (BCC_KERNEL_SOURCE) for one compile, then restore them."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Loaded:
    """A compiled, loaded program. Its fds stay valid until close()."""

    bpf: object
    prog_fd: int
    headers: KernelHeaders
    warnings: str = ""
    _closed: bool = field(default=False, repr=False)

    def map_fd(self, name: str) -> int:
        return self.bpf.get_table(name.encode()).map_fd

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.bpf.close()


def compile_and_load(
    request: BuildRequest,
    *,
    device: str | None = None,
    headers: KernelHeaders | None = None,
) -> Loaded:
    """Compile request with BCC and load its XDP function into the kernel.

    Pinned maps (XDPCTL_PIN_DIR) are created or reused by BCC at this point.
    """
    bcc = _import_bcc()
    headers = headers or find_kernel_headers()
    cflags = [*request.cflags(), *headers.cflags]
    module = None
    with _environment(headers.env), _captured_output() as out:
        try:
            module = bcc.BPF(src_file=str(request.source).encode(), cflags=cflags, device=device)
        except Exception:  # BCC raises bare Exception with no detail
            module = None
    text = out[0] if out else ""
    if module is None:
        if "Unable to find kernel headers" in text:
            raise HeadersMissing(f"BCC found no kernel headers: {text.strip().splitlines()[0]}")
        if device is not None and " error: " not in text:
            # BCC creates offloaded maps on the device and says nothing when it cannot.
            raise ModeError(
                f"{device} cannot take an offloaded XDP program (hardware offload needs a NIC whose "
                "driver supports it, such as Netronome's nfp); use --mode native or --mode generic"
            )
        if "could not open bpf fd from pin" in text.lower() or "pinned" in text.lower():
            raise CompileFailed(
                "BCC could not open or create the pinned maps: " + text.strip().splitlines()[-1], text
            )
        raise CompileFailed(f"compiling {request.source.name} failed: {compile_error_summary(text)}", text)

    with _captured_output() as out2:
        try:
            fn = module.load_func(request.function.encode(), bcc.BPF.XDP, device=device)
            error = None
        except Exception as exc:  # noqa: BLE001 - BCC raises bare Exception
            error = exc
    log = out2[0] if out2 else ""
    if error is not None:
        module.close()
        message = str(error)
        if "super-user" in message or "Operation not permitted" in message:
            raise MissingCapability("loading an XDP program", "CAP_BPF and CAP_NET_ADMIN")
        if "Argument list too long" in message or "E2BIG" in message:
            raise VerifierRejected("the verifier rejected the program: it is too large", log)
        raise VerifierRejected(f"the verifier rejected the program: {verifier_summary(log)}", log)
    return Loaded(bpf=module, prog_fd=fn.fd, headers=headers, warnings=text + log)


def errno_is_perm(exc: OSError) -> bool:
    return exc.errno in (errno.EPERM, errno.EACCES)
