"""The only module that imports BCC: compiling bpf/ and loading the result.

A program compiled before (the same key: xdpctl/kernel/compile_cache.py) is
loaded from the compile cache without BCC: its maps opened at their pins or
made as BCC would, its bytecode verified and loaded again. A miss compiles
as without a cache, then keeps what BCC loaded. Offloaded programs (device)
are the device's and never cached.

BCC writes clang's diagnostics and the verifier's log straight to the
process's stdout and stderr. They are captured here, so that a user sees one
line saying what went wrong (with the verifier's own message, the kernel and
the variant), and the rest only with --verbose.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..errors import BccMissing, CompileFailed, HeadersMissing, MissingCapability, ModeError, VerifierRejected
from . import compile_cache, libbpf, program_image
from .build import PROG_TYPES, BuildRequest
from .headers import KernelHeaders, find_kernel_headers
from .kernel_version import require_supported, running_release

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


def refused(request: BuildRequest, err: int, log: str, release: str | None = None):
    """The error for a program the kernel refused to load (err: its errno),
    naming the kernel and the variant; the log goes to --verbose."""
    if err == errno.EPERM:
        what = "an XDP program" if request.prog_type == "xdp" else "a TC program"
        return MissingCapability(f"loading {what}", "CAP_BPF and CAP_NET_ADMIN")
    what = f"variant: {request.variant}" if request.variant else f"{request.function} in {request.source.name}"
    where = f"the verifier of Linux {release or running_release()} rejected the program ({what})"
    if err == errno.E2BIG:
        return VerifierRejected(f"{where}: it is too large", log)
    return VerifierRejected(f"{where}: {verifier_summary(log)}", log)


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
    """A loaded program and its maps. Its fds stay valid until close()."""

    prog_fd: int
    headers: KernelHeaders
    maps: dict[str, int]  # the C's map names -> fds
    warnings: str = ""
    cache: str = ""  # what the compile cache did (compile_cache.Lookup.note), shown with --verbose
    cached: bool = False  # loaded from the compile cache, not compiled
    _release: Callable[[], None] | None = field(default=None, repr=False)

    def map_fd(self, name: str) -> int:
        return self.maps[name]

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


def compile_and_load(
    request: BuildRequest,
    *,
    device: str | None = None,
    headers: KernelHeaders | None = None,
) -> Loaded:
    """Load request's function (XDP, or TC) into the kernel: from the compile cache
    when it holds it, else compiled with BCC (and then kept there).

    Pinned maps (request.pin_dir) are created or reused at this point.
    """
    require_supported()
    headers = headers or find_kernel_headers()
    if device is not None:
        return _compile(request, device, headers, None)
    lookup = compile_cache.Lookup(request, headers)
    image = lookup.get()
    if image is not None:
        loaded = _load_image(request, image, headers, lookup)
        if loaded is not None:
            return loaded
    return _compile(request, None, headers, lookup)


def _load_image(request: BuildRequest, image, headers: KernelHeaders, lookup) -> Loaded | None:
    """The cached program loaded, or None when its maps do not fit (then the
    program is compiled, as on a miss)."""
    if image.prog_type != PROG_TYPES[request.prog_type]:  # the key says so; the entry is data from a file
        lookup.missed(f"the cached program is of type {image.prog_type}, not {request.prog_type}")
        return None
    try:
        done = program_image.load(image, request.pin_dir)
    except program_image.MapsDiffer as exc:
        lookup.missed(str(exc))
        return None
    except libbpf.ProgLoadFailed as exc:
        raise refused(request, exc.errno, exc.log) from None
    except OSError as exc:  # making a map: BCC meets the same refusal and words it
        lookup.missed(f"its maps could not be made: {exc.strerror}")
        return None
    return Loaded(done.prog_fd, headers, done.maps, cache=lookup.note, cached=True, _release=done.close)


def _tables(bcc, module) -> list[tuple[str, int]]:
    """Every map of a compiled module, by name and fd (declared ones too
    that the function does not use, such as meta)."""
    lib = bcc.lib
    lib.bpf_num_tables.restype, lib.bpf_num_tables.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
    lib.bpf_table_name.restype = ctypes.c_char_p
    lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.bpf_table_fd_id.restype = ctypes.c_int
    lib.bpf_table_fd_id.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return [(lib.bpf_table_name(module.module, i).decode(), lib.bpf_table_fd_id(module.module, i))
            for i in range(lib.bpf_num_tables(module.module))]


def _compile(request: BuildRequest, device: str | None, headers: KernelHeaders, lookup) -> Loaded:
    """Compile with BCC and load; keep the result in the cache (lookup)."""
    bcc = _import_bcc()
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
            kind = {"xdp": bcc.BPF.XDP, "sched_cls": bcc.BPF.SCHED_CLS}[request.prog_type]
            fn = module.load_func(request.function.encode(), kind, device=device)
            error = None
        except Exception as exc:  # noqa: BLE001 - BCC raises bare Exception
            error = exc
    log = out2[0] if out2 else ""
    if error is not None:
        module.close()
        message = str(error)
        if "super-user" in message or "Operation not permitted" in message:
            raise refused(request, errno.EPERM, log)
        if "Argument list too long" in message or "E2BIG" in message:
            raise refused(request, errno.E2BIG, log)
        raise refused(request, errno.EACCES, log)
    tables = _tables(bcc, module)
    if lookup is not None:
        # What went wrong with keeping it is a note, never an error: the program is loaded.
        try:
            image, why = program_image.record(module.dump_func(request.function.encode()), tables, fn.fd,
                                              bcc.lib.bpf_module_license(module.module).decode(),
                                              request.pin_dir)
        except OSError as exc:
            image, why = None, f"cannot read what BCC loaded ({exc.strerror})"
        lookup.put(image, why)
    return Loaded(fn.fd, headers, dict(tables), warnings=text + log, cache=lookup.note if lookup else "",
                  _release=module.close)


def errno_is_perm(exc: OSError) -> bool:
    return exc.errno in (errno.EPERM, errno.EACCES)
