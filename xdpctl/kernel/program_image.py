"""A loaded program as the compile cache keeps it, and loading it again
without BCC.

BCC compiles C to BPF instructions, creates (or opens at their pins) the
maps the C declares, and writes each map's fd into the ld_imm64 instructions
that refer to it (src_reg BPF_PSEUDO_MAP_FD). An image is those instructions
with the fds taken out, and each map by name and spec, and, for a pinned map,
its pin relative to the pin directory. Loading an image does what BCC's
BPF_TABLE_PINNED does: open the pin if there is one (refusing a map whose
spec differs), else create the map and pin it; unpinned maps are created
fresh. Then the fds go back into the instructions and the kernel verifies and
loads them as it would BCC's.

Every kernel call goes through xdpctl/kernel/libbpf.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from dataclasses import dataclass, field

from . import libbpf

LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW: two instruction slots
CALL = 0x85  # BPF_JMP | BPF_CALL
PSEUDO_MAP_FD = 1  # src_reg of an ld_imm64 whose imm is a map fd
INSN = struct.Struct("<BBhi")  # code, dst_reg | src_reg << 4, off, imm
MAX_INSNS = 1_000_000  # the verifier's limit (BPF_COMPLEXITY_LIMIT_INSNS)
MAX_MAPS = 64  # far more than any xdpctl program declares
PIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class MapSpec:
    table: str  # the name in the C (BCC's table name; Loaded.map_fd's argument)
    name: str  # the kernel's name for it (BCC's, cut to 15 bytes)
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    pin: str | None  # relative to the pin directory; None: created fresh at every load

    def matches(self, info: libbpf.MapInfo) -> bool:
        return (info.type, info.key_size, info.value_size, info.max_entries, info.flags) == \
            (self.type, self.key_size, self.value_size, self.max_entries, self.flags)


@dataclass(frozen=True)
class ProgramImage:
    name: str  # the program's name, as BCC gave it to the kernel
    license: str
    prog_type: int
    insns: bytes  # the fds of relocs zeroed
    maps: tuple[MapSpec, ...]
    relocs: tuple[tuple[int, int], ...]  # (instruction index, index into maps)

    def problem(self) -> str | None:
        """What makes the image unloadable, or None (checked before any load
        of a cache entry: it is data from a file)."""
        count, rest = divmod(len(self.insns), INSN.size)
        if rest or not 0 < count <= MAX_INSNS:
            return f"{len(self.insns)} bytes of instructions"
        if len(self.maps) > MAX_MAPS:
            return f"{len(self.maps)} maps"
        pins = [m.pin for m in self.maps if m.pin is not None]
        if any(not PIN_NAME.match(p) for p in pins) or len(set(pins)) != len(pins):
            return "a bad pin name"
        if len({m.table for m in self.maps}) != len(self.maps):
            return "two maps of one name"
        for index, which in self.relocs:
            if not 0 <= index < count - 1 or not 0 <= which < len(self.maps):
                return "a relocation out of range"
            code, regs, _, _ = INSN.unpack_from(self.insns, index * INSN.size)
            if code != LD_IMM64 or regs >> 4 != PSEUDO_MAP_FD:
                return "a relocation that is not a map load"
        if len({i for i, _ in self.relocs}) != len(self.relocs):
            return "two relocations of one instruction"
        return None

    def with_fds(self, fds: list[int]) -> bytes:
        out = bytearray(self.insns)
        for index, which in self.relocs:
            code, regs, off, _ = INSN.unpack_from(out, index * INSN.size)
            INSN.pack_into(out, index * INSN.size, code, regs, off, fds[which])
        return bytes(out)


# --- recording what BCC loaded ----------------------------------------------------


def _is_map(fd: int) -> bool:
    """A pin may hold a program (prog, prog_new) or a map; ids of the two are
    separate, so only a map's id may be compared with a map's."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            return any(line.startswith("map_type:") for line in f)
    except OSError:
        return False


def pinned_maps(pin_dir: str, ids: set[int]) -> dict[int, str]:
    """map id -> its pin's name, for the maps of ids pinned in pin_dir."""
    found: dict[int, str] = {}
    for name in sorted(os.listdir(pin_dir)):
        try:
            fd = libbpf.obj_get(os.path.join(pin_dir, name))
        except OSError:
            continue  # a directory, or not xdpctl's
        try:
            if _is_map(fd):
                info = libbpf.map_info(fd)
                if info.id in ids and info.id not in found:
                    found[info.id] = name
        finally:
            os.close(fd)
    return found


def record(insns: bytes, tables: list[tuple[str, int]], prog_fd: int, license: str,
           pin_dir: str | None) -> tuple[ProgramImage | None, str]:
    """The image of a program BCC just loaded (tables: its maps, by name and
    fd), or None and why it cannot be kept."""
    prog = libbpf.prog_info(prog_fd)
    infos = [libbpf.map_info(fd) for _, fd in tables]
    pins = pinned_maps(pin_dir, {i.id for i in infos}) if pin_dir is not None else {}
    maps = tuple(MapSpec(table, info.name, info.type, info.key_size, info.value_size, info.max_entries,
                         info.flags, pins.get(info.id)) for (table, _), info in zip(tables, infos))
    by_fd = {fd: i for i, (_, fd) in enumerate(tables)}
    relocs = []
    out = bytearray(insns)
    count = len(insns) // INSN.size
    i = 0
    while i < count:
        code, regs, off, imm = INSN.unpack_from(out, i * INSN.size)
        src = regs >> 4
        if code == LD_IMM64:
            if src == PSEUDO_MAP_FD:
                if imm not in by_fd:
                    return None, f"instruction {i} loads fd {imm}, which is none of the program's maps"
                relocs.append((i, by_fd[imm]))
                INSN.pack_into(out, i * INSN.size, code, regs, off, 0)
            elif src != 0:
                return None, f"instruction {i} is an ld_imm64 of a kind the cache does not relocate ({src})"
            i += 2
            continue
        if code == CALL and src not in (0, 1):  # helpers and BPF-to-BPF calls only, no kfuncs
            return None, f"instruction {i} calls a kernel function"
        i += 1
    image = ProgramImage(prog.name, license, prog.type, bytes(out), maps, tuple(relocs))
    problem = image.problem()
    return (None, problem) if problem else (image, "")


# --- loading an image --------------------------------------------------------------


@dataclass
class LoadedImage:
    prog_fd: int
    maps: dict[str, int]  # table name -> fd
    _fds: list[int] = field(default_factory=list, repr=False)

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


class MapsDiffer(Exception):
    """A pinned map is not what the image was built against: compile instead."""


def open_maps(image: ProgramImage, pin_dir: str | None) -> list[int]:
    """The fd of each of the image's maps, in order: the pinned ones opened
    (all checked before anything is created), the rest created, and pinned
    where the image pins them. MapsDiffer when a pin holds another map;
    OSError when the kernel refuses."""
    fds: list[int | None] = [None] * len(image.maps)
    try:
        for i, spec in enumerate(image.maps):
            if spec.pin is None or pin_dir is None:
                continue
            try:
                fds[i] = libbpf.obj_get(os.path.join(pin_dir, spec.pin))
            except FileNotFoundError:  # created below
                continue
            if not _is_map(fds[i]) or not spec.matches(libbpf.map_info(fds[i])):
                raise MapsDiffer(f"the map pinned at {spec.pin} is not the one the cached program was built for")
        for i, spec in enumerate(image.maps):
            if fds[i] is not None:
                continue
            fds[i] = libbpf.map_create(spec.type, spec.name, spec.key_size, spec.value_size, spec.max_entries,
                                       spec.flags)
            if spec.pin is not None and pin_dir is not None:
                libbpf.obj_pin(fds[i], os.path.join(pin_dir, spec.pin))
    except BaseException:
        for fd in fds:
            if fd is not None:
                os.close(fd)
        raise
    return [fd for fd in fds if fd is not None]


def load(image: ProgramImage, pin_dir: str | None) -> LoadedImage:
    """Load an image: its maps (open_maps), then the program. A refusal
    raises libbpf.ProgLoadFailed with the verifier's log (the load is tried
    again to get it, as BCC does)."""
    fds = open_maps(image, pin_dir)
    try:
        insns = image.with_fds(fds)
        try:
            prog_fd = libbpf.prog_load(image.prog_type, image.name, image.license, insns)
        except libbpf.ProgLoadFailed as exc:
            if exc.errno == 1:  # EPERM: no privilege; the verifier never ran
                raise
            try:
                prog_fd = libbpf.prog_load(image.prog_type, image.name, image.license, insns, log=True)
            except libbpf.ProgLoadFailed as again:
                if not again.log and exc.errno == again.errno:
                    raise exc from None
                raise
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return LoadedImage(prog_fd, {spec.table: fd for spec, fd in zip(image.maps, fds)}, [prog_fd, *fds])
