"""The only module that calls libbpf: pinned objects, map I/O, loading a
program, object info and BPF_PROG_TEST_RUN, through ctypes.

libbpf (libbpf.so.1) comes with BCC's packages. Going through it rather than
BCC's Python module lets `xdpctl stats` read pinned maps without loading the
compiler. Every failing call raises OSError with the kernel's errno; callers
translate it into a typed error.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from dataclasses import dataclass
from typing import Iterator

_LIB_NAMES = ("libbpf.so.1", "libbpf.so.0", "libbpf.so")

BPF_OBJ_NAME_LEN = 16
BPF_ANY = 0


class _TestRunOpts(ctypes.Structure):
    """struct bpf_test_run_opts (libbpf >= 0.7)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class _BatchOpts(ctypes.Structure):
    """struct bpf_map_batch_opts."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _ProgInfo(ctypes.Structure):
    """The leading fields of struct bpf_prog_info (the kernel fills what fits)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
    ]


class _MapInfo(ctypes.Structure):
    """The leading fields of struct bpf_map_info."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


@dataclass(frozen=True)
class ProgInfo:
    id: int
    type: int
    name: str
    tag: str
    map_ids: tuple[int, ...]
    xlated_len: int = 0  # bytes of the instructions the kernel holds (after its rewrites)


@dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int


_lib = None


def _load():
    global _lib
    if _lib is None:
        last: OSError | None = None
        for name in _LIB_NAMES:
            try:
                lib = ctypes.CDLL(name, use_errno=True)
                break
            except OSError as exc:
                last = exc
        else:
            raise OSError(f"cannot load libbpf ({last})")
        vp, u32, u64, cp = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_char_p
        u32p = ctypes.POINTER(ctypes.c_uint32)
        for fname, args in {
            "bpf_obj_get": [cp],
            "bpf_obj_pin": [ctypes.c_int, cp],
            "bpf_map_lookup_elem": [ctypes.c_int, vp, vp],
            "bpf_map_update_elem": [ctypes.c_int, vp, vp, u64],
            "bpf_map_delete_elem": [ctypes.c_int, vp],
            "bpf_map_get_next_key": [ctypes.c_int, vp, vp],
            "bpf_map_lookup_batch": [ctypes.c_int, vp, vp, vp, vp, u32p, vp],
            "bpf_map_update_batch": [ctypes.c_int, vp, vp, u32p, vp],
            "bpf_map_delete_batch": [ctypes.c_int, vp, u32p, vp],
            "bpf_prog_get_fd_by_id": [u32],
            "bpf_map_get_fd_by_id": [u32],
            "bpf_prog_get_next_id": [u32, u32p],
            "bpf_map_get_next_id": [u32, u32p],
            "bpf_obj_get_info_by_fd": [ctypes.c_int, vp, u32p],
            "bpf_prog_test_run_opts": [ctypes.c_int, vp],
            "libbpf_num_possible_cpus": [],
            "bpf_map_create": [ctypes.c_int, cp, u32, u32, u32, vp],
            "bpf_prog_load": [ctypes.c_int, cp, cp, vp, ctypes.c_size_t, vp],
            "bpf_prog_bind_map": [ctypes.c_int, ctypes.c_int, vp],
        }.items():
            fn = getattr(lib, fname)
            fn.argtypes = args
            fn.restype = ctypes.c_int
        _lib = lib
    return _lib


def available() -> bool:
    try:
        _load()
    except OSError:
        return False
    return True


def _check(ret: int) -> int:
    """libbpf returns -errno on failure (and sets errno)."""
    if ret < 0:
        err = -ret if ret != -1 else (ctypes.get_errno() or 1)
        raise OSError(err, os.strerror(err))
    return ret


def _buf(data: bytes | int) -> ctypes.Array:
    if isinstance(data, int):
        return ctypes.create_string_buffer(data)
    return ctypes.create_string_buffer(data, len(data))


def _in(data: bytes) -> ctypes.c_char_p:
    """bytes the kernel only reads, passed without a copy (tables are 100 MB)."""
    return ctypes.c_char_p(data)


# --- pinned objects ----------------------------------------------------------


def obj_get(path: str) -> int:
    """Open a pinned program or map; returns an fd the caller closes."""
    return _check(_load().bpf_obj_get(os.fsencode(path)))


BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12  # an array whose values are maps (of one key, value and type)
BPF_F_NO_PREALLOC = 1 << 0  # a hash whose updates replace elements whole (RCU)
BPF_F_MMAPABLE = 1 << 10  # an array user space can mmap
BPF_MAP_TYPE_DEVMAP = 14  # redirect targets: index -> ifindex
BPF_MAP_TYPE_CPUMAP = 16  # redirect CPUs: CPU -> queue size
BPF_MAP_TYPE_RINGBUF = 27  # records the program writes and user space reads (Linux 5.8)


class _MapCreateOpts(ctypes.Structure):
    """The leading fields of struct bpf_map_create_opts (libbpf >= 0.7)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
        ("numa_node", ctypes.c_uint32),
        ("map_ifindex", ctypes.c_uint32),
    ]


def map_create(map_type: int, name: str, key_size: int, value_size: int, max_entries: int, flags: int = 0,
               inner_fd: int = 0) -> int:
    """A new map; returns an fd the caller closes (or pins). inner_fd: of a
    map of maps, a map like the ones it will hold."""
    opts = _MapCreateOpts(sz=ctypes.sizeof(_MapCreateOpts), map_flags=flags, inner_map_fd=inner_fd)
    return _check(_load().bpf_map_create(map_type, name.encode()[:15], key_size, value_size, max_entries,
                                         ctypes.byref(opts)))


def obj_pin(fd: int, path: str) -> None:
    _check(_load().bpf_obj_pin(fd, os.fsencode(path)))


def pinned_map(path: str, map_type: int, name: str, key_size: int, value_size: int, max_entries: int,
               flags: int = 0) -> int:
    """The map pinned at path, made and pinned there first if there is none;
    returns an fd the caller closes."""
    try:
        return obj_get(path)
    except FileNotFoundError:
        pass
    fd = map_create(map_type, name, key_size, value_size, max_entries, flags)
    try:
        obj_pin(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def prog_bind_map(prog_fd: int, map_fd: int) -> None:
    """Make the program hold a map it does not use (BPF_PROG_BIND_MAP, Linux
    5.10): the map then lives as long as the program and is listed among its maps."""
    _check(_load().bpf_prog_bind_map(prog_fd, map_fd, None))


@contextlib.contextmanager
def opened(path: str) -> Iterator[int]:
    fd = obj_get(path)
    try:
        yield fd
    finally:
        os.close(fd)


def prog_fd_by_id(prog_id: int) -> int:
    """Needs CAP_SYS_ADMIN."""
    return _check(_load().bpf_prog_get_fd_by_id(prog_id))


def map_fd_by_id(map_id: int) -> int:
    """Needs CAP_SYS_ADMIN."""
    return _check(_load().bpf_map_get_fd_by_id(map_id))


def _ids(getter: str) -> list[int]:
    fn = getattr(_load(), getter)
    out, cur, nxt = [], 0, ctypes.c_uint32()
    while fn(cur, ctypes.byref(nxt)) == 0:
        cur = nxt.value
        out.append(cur)
    return out


def prog_ids() -> list[int]:
    """Every loaded program's id (needs CAP_SYS_ADMIN)."""
    return _ids("bpf_prog_get_next_id")


def map_ids() -> list[int]:
    """Every map's id (needs CAP_SYS_ADMIN)."""
    return _ids("bpf_map_get_next_id")


# --- loading a program ---------------------------------------------------------

BPF_PROG_TYPE_XDP = 6
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_INSN_SIZE = 8
VERIFIER_LOG_SIZE = 16 << 20  # as BCC's first try: enough for the failing path of a large program


class _ProgLoadOpts(ctypes.Structure):
    """The leading fields of struct bpf_prog_load_opts (libbpf >= 0.7); sz
    tells libbpf where they end, so later versions' fields stay zero."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("attempts", ctypes.c_int),
        ("expected_attach_type", ctypes.c_uint32),
        ("prog_btf_fd", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_ifindex", ctypes.c_uint32),
        ("kern_version", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("attach_prog_fd", ctypes.c_uint32),
        ("attach_btf_obj_fd", ctypes.c_uint32),
        ("fd_array", ctypes.c_void_p),
        ("func_info", ctypes.c_void_p),
        ("func_info_cnt", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("line_info", ctypes.c_void_p),
        ("line_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_void_p),
    ]


class ProgLoadFailed(OSError):
    """The kernel refused a program; log holds the verifier's log when one was asked for."""

    def __init__(self, err: int, log: str = ""):
        super().__init__(err, os.strerror(err))
        self.log = log


def prog_load(prog_type: int, name: str, license: str, insns: bytes, log: bool = False) -> int:
    """Load instructions (map fds already in their ld_imm64s); returns the
    program's fd. log: keep the verifier's log (level 1) for the error; the
    verifier then works the same, only slower, so callers ask for it only
    on a retry after a refusal."""
    lib = _load()
    opts = _ProgLoadOpts(sz=ctypes.sizeof(_ProgLoadOpts))
    buf = None
    if log:
        buf = ctypes.create_string_buffer(VERIFIER_LOG_SIZE)
        opts.log_level, opts.log_size = 1, VERIFIER_LOG_SIZE
        opts.log_buf = ctypes.cast(buf, ctypes.c_void_p)
    ret = lib.bpf_prog_load(prog_type, name.encode()[: BPF_OBJ_NAME_LEN - 1], license.encode(), _in(insns),
                            len(insns) // BPF_INSN_SIZE, ctypes.byref(opts))
    if ret < 0:
        err = -ret if ret != -1 else (ctypes.get_errno() or 1)
        raise ProgLoadFailed(err, buf.value.decode(errors="replace") if buf is not None else "")
    return ret


# --- object info -------------------------------------------------------------


def prog_info(fd: int) -> ProgInfo:
    lib = _load()
    info = _ProgInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)))
    ids: tuple[int, ...] = ()
    if info.nr_map_ids:
        arr = (ctypes.c_uint32 * info.nr_map_ids)()
        again = _ProgInfo()
        again.nr_map_ids = info.nr_map_ids
        again.map_ids = ctypes.addressof(arr)
        size = ctypes.c_uint32(ctypes.sizeof(again))
        _check(lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(again), ctypes.byref(size)))
        ids = tuple(arr[: again.nr_map_ids])
    return ProgInfo(
        id=info.id,
        type=info.type,
        name=info.name.decode(errors="replace"),
        tag=bytes(info.tag).hex(),
        map_ids=ids,
        xlated_len=info.xlated_prog_len,
    )


def map_memlock(fd: int) -> int:
    """The kernel memory a map holds, in bytes (fdinfo's memlock: an LRU or
    preallocated hash holds all of it from the start)."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("memlock:"))


def map_info(fd: int) -> MapInfo:
    info = _MapInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(_load().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)))
    return MapInfo(
        id=info.id,
        type=info.type,
        name=info.name.decode(errors="replace"),
        key_size=info.key_size,
        value_size=info.value_size,
        max_entries=info.max_entries,
        flags=info.map_flags,
    )


# --- map I/O -----------------------------------------------------------------


def possible_cpus() -> int:
    return _check(_load().libbpf_num_possible_cpus())


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    """The value under key, or None when there is none."""
    value = _buf(value_size)
    ret = _load().bpf_map_lookup_elem(fd, _buf(key), value)
    if ret < 0 and -ret == 2:  # ENOENT
        return None
    _check(ret)
    return value.raw


def map_update(fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    _check(_load().bpf_map_update_elem(fd, _in(key), _in(value), flags))


def map_delete(fd: int, key: bytes) -> bool:
    """Delete key; False when it was not there."""
    ret = _load().bpf_map_delete_elem(fd, _buf(key))
    if ret < 0 and -ret == 2:
        return False
    _check(ret)
    return True


def map_keys(fd: int, key_size: int) -> list[bytes]:
    lib = _load()
    keys: list[bytes] = []
    cur = None
    nxt = _buf(key_size)
    while True:
        ret = lib.bpf_map_get_next_key(fd, None if cur is None else _buf(cur), nxt)
        if ret < 0:
            if -ret == 2:
                return keys
            _check(ret)
        cur = nxt.raw
        keys.append(cur)


def map_lookup_batch(fd: int, key_size: int, value_size: int, max_entries: int) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a map in as few syscalls as the kernel allows."""
    lib = _load()
    chunk = max(1, min(max_entries, 4096))
    keys = _buf(key_size * chunk)
    values = _buf(value_size * chunk)
    out_batch = _buf(max(key_size, 8))
    in_batch = None
    opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts))
    result: list[tuple[bytes, bytes]] = []
    while True:
        count = ctypes.c_uint32(chunk)
        ret = lib.bpf_map_lookup_batch(
            fd, in_batch, out_batch, keys, values, ctypes.byref(count), ctypes.byref(opts)
        )
        if ret < 0 and -ret != 2:
            _check(ret)
        kraw, vraw = keys.raw, values.raw
        for i in range(count.value):
            result.append(
                (kraw[i * key_size : (i + 1) * key_size], vraw[i * value_size : (i + 1) * value_size])
            )
        if ret < 0:  # ENOENT: that was the last batch
            return result
        in_batch = _buf(out_batch.raw)


def map_update_batch(fd: int, keys: bytes, values: bytes, count: int, flags: int = BPF_ANY) -> None:
    """Write count (key, value) pairs given as two packed byte strings."""
    if not count:
        return
    opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts), elem_flags=flags)
    n = ctypes.c_uint32(count)
    _check(_load().bpf_map_update_batch(fd, _in(keys), _in(values), ctypes.byref(n), ctypes.byref(opts)))


def map_delete_batch(fd: int, keys: bytes, count: int) -> None:
    """Delete count keys given as one packed byte string (all must exist)."""
    if not count:
        return
    opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts))
    n = ctypes.c_uint32(count)
    _check(_load().bpf_map_delete_batch(fd, _in(keys), ctypes.byref(n), ctypes.byref(opts)))


# --- BPF_PROG_TEST_RUN -------------------------------------------------------


@dataclass(frozen=True)
class TestRun:
    retval: int
    duration_ns: int
    data_out: bytes

    __test__ = False  # not a pytest class


def prog_test_run(fd: int, data: bytes, repeat: int = 1) -> TestRun:
    """Run an XDP program over one frame `repeat` times, in the kernel."""
    data_in = _buf(data)
    data_out = _buf(len(data) + 256)
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.cast(data_in, ctypes.c_void_p),
        data_out=ctypes.cast(data_out, ctypes.c_void_p),
        data_size_in=len(data),
        data_size_out=len(data_out),
        repeat=repeat,
    )
    _check(_load().bpf_prog_test_run_opts(fd, ctypes.byref(opts)))
    return TestRun(opts.retval, opts.duration, data_out.raw[: opts.data_size_out])


# --- ring buffers ----------------------------------------------------------------

_RING_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


def _ring_functions(lib) -> None:
    vp = ctypes.c_void_p
    lib.ring_buffer__new.argtypes = [ctypes.c_int, _RING_CALLBACK, vp, vp]
    lib.ring_buffer__new.restype = vp
    lib.ring_buffer__add.argtypes = [vp, ctypes.c_int, _RING_CALLBACK, vp]
    lib.ring_buffer__add.restype = ctypes.c_int
    lib.ring_buffer__poll.argtypes = [vp, ctypes.c_int]
    lib.ring_buffer__poll.restype = ctypes.c_int
    lib.ring_buffer__consume.argtypes = [vp]
    lib.ring_buffer__consume.restype = ctypes.c_int
    lib.ring_buffer__free.argtypes = [vp]
    lib.ring_buffer__free.restype = None


class RingReader:
    """BPF ring buffers read through libbpf (ring_buffer__new/__poll), no
    BCC: on_record(ring, data) gets each record's bytes, ring being the
    index of the map in the fds given. Close it (or use it as a context)."""

    def __init__(self, map_fds: list[int], on_record):
        lib = _load()
        _ring_functions(lib)
        self._lib = lib
        self._error: BaseException | None = None

        def make(index: int):
            def callback(_ctx, data, size):
                try:
                    on_record(index, ctypes.string_at(data, size))
                except BaseException as exc:  # raised again from poll(), outside libbpf
                    self._error = exc
                    return -1
                return 0
            return _RING_CALLBACK(callback)

        self._callbacks = [make(i) for i in range(len(map_fds))]  # kept alive as long as the rings
        ptr = lib.ring_buffer__new(map_fds[0], self._callbacks[0], None, None)
        if not ptr:
            err = ctypes.get_errno() or 22
            raise OSError(err, f"ring_buffer__new: {os.strerror(err)}")
        self._rb = ptr
        for fd, cb in zip(map_fds[1:], self._callbacks[1:]):
            try:
                _check(lib.ring_buffer__add(self._rb, fd, cb, None))
            except BaseException:
                self.close()
                raise

    def _raise(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def poll(self, timeout_ms: int) -> int:
        """Records handled; waits up to timeout_ms for the first (EINTR: 0)."""
        ret = self._lib.ring_buffer__poll(self._rb, timeout_ms)
        self._raise()
        if ret == -4:  # EINTR: a signal; the caller looks at why
            return 0
        return _check(ret)

    def consume(self) -> int:
        """Every record there now, without waiting."""
        ret = self._lib.ring_buffer__consume(self._rb)
        self._raise()
        return _check(ret)

    def close(self) -> None:
        if self._rb:
            self._lib.ring_buffer__free(self._rb)
            self._rb = None

    def __enter__(self) -> "RingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
