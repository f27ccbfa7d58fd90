"""The compile cache: the bytecode of every variant BCC compiled, kept on disk
and reused, as Cilium keeps its compiled objects keyed by the datapath's
configuration.

A compile takes 2-4 s here and minutes in an emulated VM; loading kept
bytecode takes milliseconds plus the verifier's own time. An entry is keyed
by everything that determines the bytecode:

- the source and every local file it includes (their contents);
- the function and its program type (XDP or TC), the -D flags, and
  whether the maps are pinned (not where: BCC uses the pin directory only
  to open or create the maps, and every interface has its own);
- BCC: libbcc and the LLVM/clang libraries beside it, and BCC's Python
  package (path, size and mtime of each, found without importing BCC);
- the kernel headers BCC compiles against (the header trees: their real
  paths and the identity of their key files), the machine, and the
  variables BCC's loader reads (ARCH, BCC_LINUX_VERSION_CODE);
- xdpctl's version, the state ABI version, and the cache's format version.

An entry holds a xdpctl/kernel/program_image.py image: the instructions as
BCC produced them, fds taken out, and each map by name and spec. Its file:

    magic "XDPCTLCC" | u32 format | u32 header length | key (32) |
    sha256 of what follows (32) | header (JSON: name, license, type, maps,
    relocations, instruction count) | instructions

An entry whose magic, format, key, checksum or contents do not hold up is
removed and the program compiled again, never loaded.

The directory (/var/cache/xdpctl, or XDPCTL_CACHE_DIR; empty turns the
cache off) is xdpctl's alone: created mode 0700 by xdpctl, and refused
(compiling instead) when it is a symlink, someone else's, or open to group
or others. Nothing in it is followed: the directory is opened once with
O_NOFOLLOW and every entry through its fd, and each entry is opened once and
checked on its descriptor (a regular file of ours, of a sane size) before it
is read. Entries are written to a temporary file, fsynced and renamed, mode
0600. The cache is bounded (64 MiB): the least recently used entries go
first (a hit touches its entry).
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import os
import platform
import re
import secrets
import stat
import struct
import sysconfig
import time
from dataclasses import dataclass

from .build import BuildRequest
from .headers import AUTOCONF, KCONFIG, KernelHeaders
from .program_image import MapSpec, ProgramImage

DEFAULT_DIR = "/var/cache/xdpctl"
ENV_DIR = "XDPCTL_CACHE_DIR"
DEFAULT_MAX_BYTES = 64 << 20
MAX_ENTRY_BYTES = 16 << 20  # a 1M-instruction program is 8 MiB
FORMAT = 1
MAGIC = b"XDPCTLCC"
PREAMBLE = struct.Struct("<8sII32s32s")  # magic, format, header length, key, checksum
SUFFIX = ".prog"
ENTRY_NAME = re.compile(r"^[0-9a-f]{64}\.prog$")
TMP_PREFIX = ".tmp-"
STALE_TMP_S = 3600  # a temporary file this old was left by a killed xdpctl

# What BCC's loader reads from the environment besides the header trees: ARCH
# changes its flags, BCC_LINUX_VERSION_CODE its LINUX_VERSION_CODE.
BCC_ENV = ("ARCH", "BCC_LINUX_VERSION_CODE", "BCC_KERNEL_MODULES_SUFFIX")
# Files whose identity stands for a header tree's.
HEADER_FILES = (KCONFIG, AUTOCONF, "include/generated/uapi/linux/version.h", "include/uapi/linux/bpf.h",
                "include/config/kernel.release")


def _version() -> str:
    from .. import __version__  # noqa: PLC0415 - the package root, not a layer

    return __version__


class Unusable(Exception):
    """The cache directory cannot be used; str() says why."""


class Absent(Unusable):
    """There is no cache directory yet (the first compile makes it)."""


class Damaged(Exception):
    """An entry that must not be loaded; str() says what is wrong."""


# --- the key ---------------------------------------------------------------------


def _file_id(path: str) -> list | None:
    """A file's identity without reading it: its real path, size and mtime."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return None
    return [real, st.st_size, st.st_mtime_ns]


def _lib_dirs(environ) -> list[str]:
    multiarch = sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"
    dirs = [d for d in environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    return dirs + [f"/usr/lib/{multiarch}", f"/lib/{multiarch}", "/usr/lib64", "/lib64", "/usr/lib", "/lib",
                   "/usr/local/lib"]


def toolchain_identity(environ=None) -> list | None:
    """BCC as the compiler: libbcc, the LLVM and clang libraries beside it (a
    rebuilt LLVM changes the code), and BCC's Python package. Found without
    importing BCC, which costs time in a slow VM. None when libbcc or BCC's
    package cannot be found: no key, no cache."""
    environ = os.environ if environ is None else environ
    libbcc = next((os.path.join(d, "libbcc.so.0") for d in _lib_dirs(environ)
                   if os.path.exists(os.path.join(d, "libbcc.so.0"))), None)
    try:
        spec = importlib.util.find_spec("bcc")
    except (ImportError, ValueError):
        spec = None
    if libbcc is None or spec is None or not spec.origin:
        return None
    libdir = os.path.dirname(os.path.realpath(libbcc))
    files = [libbcc, *sorted(glob.glob(os.path.join(libdir, "libclang-cpp.so*"))),
             *sorted(glob.glob(os.path.join(libdir, "libLLVM*.so*")))]
    package = os.path.dirname(spec.origin)
    files += [os.path.join(package, f) for f in ("__init__.py", "libbcc.py", "version.py")]
    out, seen = [], set()
    for path in files:
        ident = _file_id(path)
        if ident is not None and ident[0] not in seen:
            seen.add(ident[0])
            out.append(ident)
    return out


def headers_identity(headers: KernelHeaders, release: str | None = None, root: str = "/") -> dict:
    """The headers BCC reads, named by the header trees themselves: their
    real paths (a set) and the identity of their key files. Not by how they
    were found (exact, BCC_KERNEL_SOURCE, the fallback) nor by the flags that
    point BCC at them: the same trees give the same instructions (measured
    for every variant: Debian's 6.1 trees as the exact headers of a 6.1
    kernel and as the fallback on 6.18), and a VM guest booted on the kernel
    those headers are for must find what the host compiled with them.
    Without trees (the kernel's own kheaders, which BCC unpacks itself), the
    release and the archive's size."""
    release = release or os.uname().release
    trees = sorted({os.path.realpath(tree) for tree in headers.trees})
    if not trees:
        archive = _file_id(os.path.join(root, "sys/kernel/kheaders.tar.xz")) or [None, None]
        return {"kind": headers.kind, "release": release, "size": archive[1], "tree": headers.tree,
                "cflags": list(headers.cflags), "env": dict(sorted(headers.env.items()))}
    return {"trees": [[tree, [_file_id(os.path.join(tree, f)) for f in HEADER_FILES]] for tree in trees]}


def key_material(request: BuildRequest, headers: KernelHeaders, toolchain: list, *, environ=None,
                 machine: str | None = None, release: str | None = None) -> dict:
    """Everything that determines the bytecode (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    base = request.source.parent
    sources = []
    for path in request.local_sources():
        name = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
        sources.append([name, hashlib.sha256(path.read_bytes()).hexdigest()])
    bcc_env = {k: environ.get(k) for k in BCC_ENV}
    return {
        "format": FORMAT,
        "xdpctl": _version(),
        "abi": request.abi_version,
        "sources": sources,
        "function": request.function,
        "prog_type": request.prog_type,
        "defines": [list(d) for d in request.defines],
        "pinned": request.pin_dir is not None,
        "bcc": toolchain,
        "bcc_env": bcc_env,
        "headers": headers_identity(headers, release),
        "machine": machine or platform.machine(),
    }


def cache_key(material: dict) -> bytes:
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).digest()


# --- an entry's bytes ------------------------------------------------------------------


def encode(key: bytes, image: ProgramImage) -> bytes:
    header = json.dumps({
        "name": image.name,
        "license": image.license,
        "prog_type": image.prog_type,
        "insns": len(image.insns) // 8,
        "maps": [[m.table, m.name, m.type, m.key_size, m.value_size, m.max_entries, m.flags, m.pin]
                 for m in image.maps],
        "relocs": [list(r) for r in image.relocs],
    }, separators=(",", ":")).encode()
    body = header + image.insns
    return PREAMBLE.pack(MAGIC, FORMAT, len(header), key, hashlib.sha256(body).digest()) + body


def _u32(value) -> int:
    if type(value) is not int or not 0 <= value < 1 << 32:
        raise Damaged(f"not a 32-bit number: {value!r}")
    return value


def _name(value) -> str:
    if type(value) is not str or not 0 < len(value) <= 64 or not value.isprintable():
        raise Damaged(f"not a name: {value!r}")
    return value


def decode(data: bytes, key: bytes) -> ProgramImage:
    """The image an entry holds, or Damaged."""
    if len(data) < PREAMBLE.size:
        raise Damaged("shorter than its preamble")
    magic, fmt, header_len, stored_key, checksum = PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise Damaged("not an xdpctl cache entry (magic)")
    if fmt != FORMAT:
        raise Damaged(f"format {fmt}, not {FORMAT}")
    if stored_key != key:
        raise Damaged("the key it was stored under is not its name")
    body = data[PREAMBLE.size:]
    if hashlib.sha256(body).digest() != checksum:
        raise Damaged("checksum mismatch")
    if header_len > len(body):
        raise Damaged("header longer than the entry")
    try:
        head = json.loads(body[:header_len])
        insns = body[header_len:]
        if not isinstance(head, dict) or _u32(head["insns"]) * 8 != len(insns):
            raise Damaged("instruction count does not match")
        maps = []
        for m in head["maps"]:
            table, name, type_, key_size, value_size, max_entries, flags, pin = m
            maps.append(MapSpec(_name(table), _name(name), _u32(type_), _u32(key_size), _u32(value_size),
                                _u32(max_entries), _u32(flags), None if pin is None else _name(pin)))
        relocs = tuple((_u32(i), _u32(m)) for i, m in head["relocs"])
        image = ProgramImage(_name(head["name"]), _name(head["license"]), _u32(head["prog_type"]), insns,
                             tuple(maps), relocs)
    except (ValueError, KeyError, TypeError) as exc:
        raise Damaged(f"unreadable header ({exc})") from None
    problem = image.problem()
    if problem:
        raise Damaged(problem)
    return image


# --- the directory ---------------------------------------------------------------------


def configured_dir(environ=None) -> str | None:
    """The cache directory; None when XDPCTL_CACHE_DIR is set empty (off)."""
    environ = os.environ if environ is None else environ
    path = environ.get(ENV_DIR, DEFAULT_DIR)
    return path or None


@dataclass
class Usage:
    entries: int
    size: int


class Store:
    """An open cache directory. Every access goes through its fd."""

    def __init__(self, path: str, fd: int, max_bytes: int = DEFAULT_MAX_BYTES):
        self.path = path
        self.fd = fd
        self.max_bytes = max_bytes

    @classmethod
    def open(cls, path: str, create: bool = False, max_bytes: int = DEFAULT_MAX_BYTES) -> "Store":
        """Open (with create: make) the directory, or Unusable saying why."""
        if not os.path.isabs(path):  # it would move with the working directory
            raise Unusable(f"{path} is not an absolute path")
        if create:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            except OSError as exc:
                raise Unusable(f"cannot create {path}: {exc.strerror}") from None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Absent(f"{path} does not exist yet") from None
        except OSError as exc:
            if os.path.islink(path):
                raise Unusable(f"{path} is a symlink; xdpctl follows none") from None
            raise Unusable(f"cannot open {path}: {exc.strerror}") from None
        try:
            check_dir(os.fstat(fd), path)
        except Unusable:
            os.close(fd)
            raise
        return cls(path, fd, max_bytes)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- entries ----------------------------------------------------------------

    @staticmethod
    def entry_name(key: bytes) -> str:
        return key.hex() + SUFFIX

    def get(self, key: bytes) -> tuple[ProgramImage | None, str]:
        """The image stored under key and "", or None and why (nothing stored,
        or a damaged entry, which is removed)."""
        name = self.entry_name(key)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=self.fd)
        except FileNotFoundError:
            return None, ""
        except OSError as exc:  # ELOOP: a symlink where an entry should be
            self.discard(name)
            return None, f"removed {name}: {exc.strerror}"
        try:
            st = os.fstat(fd)
            problem = _entry_problem(st)
            if problem:
                self.discard(name)
                return None, f"removed {name}: {problem}"
            data = _read_all(fd, st.st_size)
            try:
                image = decode(data, key)
            except Damaged as exc:
                self.discard(name)
                return None, f"removed {name}: {exc}"
            try:
                os.utime(fd)  # recently used: evicted last
            except OSError:
                pass  # a read-only cache (a VM guest sees the host's) still serves hits
            return image, ""
        finally:
            os.close(fd)

    def put(self, key: bytes, image: ProgramImage) -> None:
        """Store image under key atomically; then keep the cache in its bound.
        OSError when the disk refuses (the caller goes on without)."""
        data = encode(key, image)
        if len(data) > min(self.max_bytes, MAX_ENTRY_BYTES):
            return  # it would evict everything else and then itself
        tmp = f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=self.fd)
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.entry_name(key), src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            self.discard(tmp)
            raise
        os.fsync(self.fd)  # the rename itself
        self.evict(keep=self.entry_name(key))

    def discard(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)  # unlink never follows a symlink
        except OSError:
            pass

    def _entries(self, tidy: bool = False) -> list[tuple[str, os.stat_result]]:
        """The entries and their stat; tidy: remove temporary files a killed
        xdpctl left (not when only looking, as doctor does)."""
        out = []
        with os.scandir(self.fd) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if ENTRY_NAME.match(entry.name) and stat.S_ISREG(st.st_mode):
                    out.append((entry.name, st))
                elif tidy and entry.name.startswith(TMP_PREFIX) and time.time() - st.st_mtime > STALE_TMP_S:
                    self.discard(entry.name)
        return out

    def evict(self, keep: str = "") -> list[str]:
        """Remove the least recently used entries until the rest fit the
        bound (never keep, the entry just written). Returns what went."""
        entries = sorted(self._entries(tidy=True), key=lambda e: (e[1].st_mtime_ns, e[0]))
        total = sum(st.st_size for _, st in entries)
        gone = []
        for name, st in entries:
            if total <= self.max_bytes:
                break
            if name == keep:
                continue
            self.discard(name)
            total -= st.st_size
            gone.append(name)
        return gone

    def usage(self) -> Usage:
        entries = self._entries()
        return Usage(len(entries), sum(st.st_size for _, st in entries))


def check_dir(st: os.stat_result, path: str, euid: int | None = None) -> None:
    """Unusable unless st (fstat of the opened directory) is a directory of
    this user's that no one else may enter."""
    euid = os.geteuid() if euid is None else euid
    if not stat.S_ISDIR(st.st_mode):
        raise Unusable(f"{path} is not a directory")
    if st.st_uid != euid:
        raise Unusable(f"{path} belongs to uid {st.st_uid}, not to uid {euid} that runs xdpctl")
    if st.st_mode & 0o077:
        raise Unusable(f"{path} is open to group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                       f"`chmod 700 {path}` or remove it")


def _entry_problem(st: os.stat_result, euid: int | None = None) -> str:
    euid = os.geteuid() if euid is None else euid
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != euid:
        return f"owned by uid {st.st_uid}"
    if st.st_mode & 0o077:
        return f"mode {stat.S_IMODE(st.st_mode):04o}"
    if st.st_size > MAX_ENTRY_BYTES:
        return f"{st.st_size} bytes"
    return ""


def _read_all(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- one compile's use of the cache --------------------------------------------------------


class Lookup:
    """The cache as one compile uses it: the key, a hit or not, the store
    after a miss, and a note on what happened (shown with --verbose). Never
    raises: a cache that cannot be used means compiling, as without one."""

    def __init__(self, request: BuildRequest, headers: KernelHeaders, environ=None):
        self.path = configured_dir(environ)
        self.key: bytes | None = None
        self.note = ""
        if self.path is None:
            self.note = f"compile cache: off ({ENV_DIR} is empty)"
            return
        toolchain = toolchain_identity(environ)
        if toolchain is None:
            self.note = "compile cache: not used: libbcc or BCC's Python package not found"
            return
        try:
            self.key = cache_key(key_material(request, headers, toolchain, environ=environ))
        except OSError as exc:
            self.note = f"compile cache: not used: cannot read the sources ({exc.strerror})"

    def get(self) -> ProgramImage | None:
        if self.key is None:
            return None
        try:
            with Store.open(self.path) as store:
                image, why = store.get(self.key)
        except Absent:
            self.note = "compile cache: miss (nothing cached yet)"
            return None
        except Unusable as exc:
            self.note = f"compile cache: not used: {exc}"
            return None
        except OSError as exc:
            self.note = f"compile cache: not used: {self.path}: {exc.strerror}"
            return None
        self.note = f"compile cache: hit ({self.path})" if image else \
            "compile cache: miss" + (f" ({why})" if why else "")
        return image

    def put(self, image: ProgramImage | None, why_not: str = "") -> None:
        if self.key is None or self.note.startswith("compile cache: not used"):
            return
        if image is None:
            self.note += f"; not stored: {why_not}"
            return
        try:
            with Store.open(self.path, create=True) as store:
                store.put(self.key, image)
        except Unusable as exc:
            self.note = f"compile cache: not used: {exc}"
            return
        except (OSError, ValueError) as exc:
            self.note += f"; not stored: {getattr(exc, 'strerror', None) or exc}"
            return
        self.note += f"; stored in {self.path}"

    def missed(self, why: str) -> None:
        """A hit that could not be used (its maps differ from the pins)."""
        self.note = f"compile cache: miss ({why})"


def describe(environ=None) -> tuple[str, str]:
    """For doctor: ("ok" or "warn", what the cache is)."""
    path = configured_dir(environ)
    if path is None:
        return "ok", f"off ({ENV_DIR} is empty)"
    try:
        with Store.open(path) as store:
            use = store.usage()
    except Absent:
        return "ok", f"{path}: empty (the first compile makes it)"
    except Unusable as exc:
        return "warn", f"not used: {exc}"
    except OSError as exc:
        return "warn", f"not used: {path}: {exc.strerror}"
    return "ok", f"{path}: {use.entries} program(s), {use.size / 2**20:.1f} MiB of {DEFAULT_MAX_BYTES >> 20} MiB"

