"""The compile cache without a kernel: its key, its entries' format and
damage, its bound, and how it treats its directory (no root needed)."""

from __future__ import annotations

import os
import stat
import struct
import time
from dataclasses import replace
from pathlib import Path

import pytest

from xdpctl.kernel import compile_cache
from xdpctl.kernel.build import BuildRequest
from xdpctl.kernel.compile_cache import Damaged, Lookup, Store, Unusable, cache_key, decode, encode, key_material
from xdpctl.kernel.headers import KernelHeaders
from xdpctl.kernel.program_image import INSN, LD_IMM64, MapSpec, ProgramImage

TOOLCHAIN = [["/usr/lib/x86_64-linux-gnu/libbcc.so.0.26.0", 3398840, 1676246400000000000]]


@pytest.fixture
def src(tmp_path) -> Path:
    """A source tree: main file, a quoted include that includes another, an
    angle include found through -I, and a file nobody includes."""
    d = tmp_path / "bpf"
    d.mkdir()
    (d / "prog_kern.c").write_text('#include <uapi/linux/bpf.h>\n#include "a_kern.h"\n#include <c_kern.h>\n'
                                   "int fn(struct xdp_md *ctx) { return 2; }\n")
    (d / "a_kern.h").write_text('#include "b_kern_user.h"\n#define A 1\n')
    (d / "b_kern_user.h").write_text("#define B 2\n")
    (d / "c_kern.h").write_text("#define C 3\n")
    (d / "unused.h").write_text("#define U 4\n")
    return d


@pytest.fixture
def headers(tmp_path) -> KernelHeaders:
    common, flavour = tmp_path / "linux-headers-6.1.0-57-common", tmp_path / "linux-headers-6.1.0-57-amd64"
    for tree in (common, flavour):
        (tree / "include/linux").mkdir(parents=True)
    (common / "include/linux/kconfig.h").write_text("/* kconfig */\n")
    (flavour / "include/generated").mkdir(parents=True)
    (flavour / "include/generated/autoconf.h").write_text("#define CONFIG_X 1\n")
    return KernelHeaders("fallback", str(common), "6.1.0-57-amd64",
                         cflags=(f"-I{flavour}/include", f"-I{flavour}/include/generated/uapi"),
                         env={"BCC_KERNEL_SOURCE": str(common)}, trees=(str(common), str(flavour)))


def request(src: Path, **kw) -> BuildRequest:
    base = dict(source=src / "prog_kern.c", function="fn", defines=(("XDPCTL_RULES", None), ("XDPCTL_SLOTS", "1024")),
                pin_dir="/sys/fs/bpf/xdpctl/ns1/if2", variant="kinds src", abi_version=2)
    base.update(kw)
    return BuildRequest(**base)


def key(req, headers, toolchain=TOOLCHAIN, **kw) -> bytes:
    return cache_key(key_material(req, headers, toolchain, environ={}, machine="x86_64", release="6.18.44", **kw))


# --- the key -----------------------------------------------------------------------


def test_local_sources_are_the_includes_found_beside_the_source(src):
    names = [p.name for p in request(src).local_sources()]
    assert names == ["b_kern_user.h", "a_kern.h", "c_kern.h", "prog_kern.c"]  # includes first; unused.h is not read


def test_the_key_follows_every_source_file_it_reads(src, headers):
    base = key(request(src), headers)
    assert key(request(src), headers) == base  # deterministic
    for name in ("prog_kern.c", "a_kern.h", "b_kern_user.h", "c_kern.h"):
        path = src / name
        before = path.read_text()
        path.write_text(before + "/* changed */\n")
        assert key(request(src), headers) != base, name
        path.write_text(before)
    (src / "unused.h").write_text("#define U 5\n")
    assert key(request(src), headers) == base  # a file the compile does not read


def test_the_key_follows_every_define_and_the_function(src, headers):
    base = key(request(src), headers)
    others = [
        request(src, function="other"),
        request(src, defines=(("XDPCTL_RULES", None),)),  # one removed
        request(src, defines=(("XDPCTL_RULES", None), ("XDPCTL_SLOTS", "16384"))),  # a value
        request(src, defines=(("XDPCTL_RULES", None), ("XDPCTL_SLOTS", "1024"), ("XDPCTL_DROP_NON_IP", None))),
        request(src, abi_version=3),
        request(src, pin_dir=None),  # unpinned maps: BPF_TABLE, not BPF_TABLE_PINNED
    ]
    keys = {key(r, headers) for r in others}
    assert base not in keys and len(keys) == len(others)


def test_the_key_does_not_follow_the_pin_directory_or_the_words(src, headers):
    base = key(request(src), headers)
    assert key(request(src, pin_dir="/sys/fs/bpf/xdpctl/ns9/if77"), headers) == base
    assert key(request(src, variant="described otherwise"), headers) == base
    # ... while the compile still gets it as a define
    assert '-DXDPCTL_PIN_DIR="/sys/fs/bpf/xdpctl/ns9/if77"' in request(src, pin_dir="/sys/fs/bpf/xdpctl/ns9/if77").cflags()


def test_the_key_follows_bcc_the_headers_and_the_machine(src, headers, tmp_path):
    req = request(src)
    base = key(req, headers)
    assert key(req, headers, toolchain=[[TOOLCHAIN[0][0], TOOLCHAIN[0][1] + 1, TOOLCHAIN[0][2]]]) != base
    assert key(req, headers, toolchain=[*TOOLCHAIN, ["/usr/lib/x86_64-linux-gnu/libLLVM-14.so.1", 1, 1]]) != base
    assert cache_key(key_material(req, headers, TOOLCHAIN, environ={}, machine="aarch64", release="6.18.44")) != base
    for var in ("BCC_LINUX_VERSION_CODE", "ARCH"):
        assert cache_key(key_material(req, headers, TOOLCHAIN, environ={var: "x"}, machine="x86_64",
                                      release="6.18.44")) != base, var
    other = tmp_path / "linux-headers-6.1.0-58-common"
    other.mkdir()
    assert key(req, replace(headers, trees=(str(other), headers.trees[1]))) != base  # another tree
    assert key(req, replace(headers, trees=headers.trees[:1])) != base
    autoconf = Path(headers.trees[1]) / "include/generated/autoconf.h"
    autoconf.write_text("#define CONFIG_X 2\n")  # a header package upgraded in place
    os.utime(autoconf, ns=(1, 1))
    assert key(req, headers) != base


def test_the_key_does_not_follow_the_running_kernel_for_a_distribution_tree(src, headers):
    """A VM guest booted on another kernel reads the host's cache: with the
    same (fallback) headers, the key is the same."""
    req = request(src)
    one = cache_key(key_material(req, headers, TOOLCHAIN, environ={}, machine="x86_64", release="6.18.44"))
    assert one == cache_key(key_material(req, headers, TOOLCHAIN, environ={}, machine="x86_64", release="6.12.1"))


def test_the_same_trees_found_as_exact_headers_give_the_same_key(src, headers, tmp_path):
    """Booted on the kernel the fallback headers are for (Debian's 6.1 in a
    VM), xdpctl finds them as exact headers, through /lib/modules/RELEASE/
    build and source, with other flags: the same trees, the same key (the
    instructions were measured to be the same)."""
    moddir = tmp_path / "lib/modules/6.1.0-57-amd64"
    moddir.mkdir(parents=True)
    (moddir / "source").symlink_to(headers.trees[0])
    (moddir / "build").symlink_to(headers.trees[1])
    exact = KernelHeaders("exact", str(moddir / "source"), "6.1.0-57-amd64",
                          trees=(str(moddir / "build"), str(moddir / "source")))
    req = request(src)
    assert key(req, exact) == key(req, headers)


def test_the_key_follows_the_format_and_xdpctl(src, headers, monkeypatch):
    base = key(request(src), headers)
    monkeypatch.setattr(compile_cache, "FORMAT", compile_cache.FORMAT + 1)
    assert key(request(src), headers) != base
    monkeypatch.undo()
    monkeypatch.setattr(compile_cache, "_version", lambda: "99.0")
    assert key(request(src), headers) != base


def test_the_toolchain_is_found_without_importing_bcc(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libbcc.so.0").write_bytes(b"\x7fELF" + b"\0" * 60)
    (lib / "libLLVM-14.so.1").write_bytes(b"llvm")
    first = compile_cache.toolchain_identity({"LD_LIBRARY_PATH": str(lib)})
    if first is None:
        pytest.skip("BCC's Python package is not installed here")
    assert [str(lib / "libbcc.so.0"), 64] == first[0][:2]
    assert any(f[0] == str(lib / "libLLVM-14.so.1") for f in first)
    os.utime(lib / "libLLVM-14.so.1", ns=(5, 5))  # LLVM rebuilt: the code may differ
    assert compile_cache.toolchain_identity({"LD_LIBRARY_PATH": str(lib)}) != first


# --- entries -------------------------------------------------------------------------


def image(n_maps: int = 2, pad: int = 0) -> ProgramImage:
    ld = INSN.pack(LD_IMM64, 1 | 1 << 4, 0, 0) + INSN.pack(0, 0, 0, 0)  # r1 = map (fd patched at load)
    body = ld + INSN.pack(0xB7, 0, 0, 2) * (1 + pad) + INSN.pack(0x95, 0, 0, 0)  # r0 = 2; exit
    maps = tuple(MapSpec(f"xdpctl_m{i}", f"xdpctl_m{i}", 6, 4, 32, 10, 0, f"pin{i}" if i else None)
                 for i in range(n_maps))
    return ProgramImage("xdpctl_filter", "GPL", 6, body, maps, ((0, 1),))


KEY = bytes(range(32))


def test_an_entry_round_trips():
    img = image()
    assert decode(encode(KEY, img), KEY) == img


@pytest.mark.parametrize("where", ["magic", "format", "length", "key", "checksum", "header", "insns", "last"])
def test_a_flipped_byte_anywhere_is_refused(where):
    data = bytearray(encode(KEY, image()))
    offset = {"magic": 0, "format": 8, "length": 12, "key": 16, "checksum": 48, "header": 80,
              "insns": len(data) - 20, "last": len(data) - 1}[where]
    data[offset] ^= 0x01
    with pytest.raises(Damaged):
        decode(bytes(data), KEY)


@pytest.mark.parametrize("cut", [0, 10, compile_cache.PREAMBLE.size, compile_cache.PREAMBLE.size + 5, -8, -1])
def test_a_truncated_entry_is_refused(cut):
    data = encode(KEY, image())
    with pytest.raises(Damaged):
        decode(data[:cut], KEY)


def test_an_entry_under_another_key_is_refused():
    with pytest.raises(Damaged, match="key"):
        decode(encode(KEY, image()), bytes(32))


def test_an_entry_of_another_format_is_refused(monkeypatch):
    data = encode(KEY, image())
    monkeypatch.setattr(compile_cache, "FORMAT", compile_cache.FORMAT + 1)
    with pytest.raises(Damaged, match="format"):
        decode(data, KEY)


def test_consistent_but_impossible_contents_are_refused():
    """A checksum only proves the bytes are as written: what they say is checked too."""
    good = image()
    bad = [
        replace(good, relocs=((2, 1),)),  # not an ld_imm64
        replace(good, relocs=((0, 5),)),  # no such map
        replace(good, insns=good.insns[:-3]),  # not whole instructions
        replace(good, maps=(good.maps[0], replace(good.maps[1], pin="../../etc"))),  # a pin outside the directory
        replace(good, maps=(good.maps[0], replace(good.maps[1], table=good.maps[0].table))),
    ]
    for img in bad:
        with pytest.raises(Damaged):
            decode(encode(KEY, img), KEY)


def test_patching_puts_each_fd_in_its_instruction():
    img = image()
    out = img.with_fds([7, 9])
    assert INSN.unpack_from(out, 0)[3] == 9 and out[8:] == img.insns[8:]


# --- the directory -----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    with Store.open(str(tmp_path / "cache"), create=True) as s:
        yield s


def test_the_directory_is_made_private(tmp_path):
    path = tmp_path / "cache"
    with Store.open(str(path), create=True):
        pass
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()


def test_an_absent_directory_is_not_made_by_a_lookup(tmp_path):
    with pytest.raises(compile_cache.Absent, match="does not exist"):
        Store.open(str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_a_symlinked_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "cache").symlink_to(real)
    for create in (False, True):
        with pytest.raises(Unusable, match="symlink"):
            Store.open(str(tmp_path / "cache"), create=create)


def test_a_directory_open_to_others_is_refused(tmp_path):
    path = tmp_path / "cache"
    path.mkdir()
    for mode in (0o750, 0o705, 0o777, 0o1777):
        os.chmod(path, mode)
        with pytest.raises(Unusable, match="open to group or others"):
            Store.open(str(path))
    os.chmod(path, 0o700)
    Store.open(str(path)).close()


def test_a_relative_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Unusable, match="not an absolute path"):
        Store.open("cache", create=True)
    assert not (tmp_path / "cache").exists()


def test_a_directory_of_another_user_is_refused(tmp_path):
    st = os.stat(tmp_path)
    with pytest.raises(Unusable, match="belongs to uid"):
        compile_cache.check_dir(st, str(tmp_path), euid=st.st_uid + 1)
    with pytest.raises(Unusable, match="not a directory"):
        compile_cache.check_dir(os.stat(__file__), __file__, euid=os.stat(__file__).st_uid)


def test_put_writes_atomically_a_private_file(store):
    store.put(KEY, image())
    names = os.listdir(store.path)
    assert names == [KEY.hex() + ".prog"]
    st = os.stat(os.path.join(store.path, names[0]))
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert store.get(KEY) == (image(), "")


def test_a_failed_write_leaves_nothing(store, monkeypatch):
    def broken(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        store.put(KEY, image())
    assert os.listdir(store.path) == []  # neither the entry nor its temporary file


def test_a_damaged_entry_is_removed_not_loaded(store):
    store.put(KEY, image())
    path = os.path.join(store.path, KEY.hex() + ".prog")
    data = bytearray(Path(path).read_bytes())
    data[-1] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    got, why = store.get(KEY)
    assert got is None and "checksum" in why
    assert not os.path.exists(path)


def test_an_entry_that_is_a_symlink_is_removed_not_followed(store, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(encode(KEY, image()))
    os.symlink(target, os.path.join(store.path, KEY.hex() + ".prog"))
    got, why = store.get(KEY)
    assert got is None and why
    assert target.exists() and not os.path.lexists(os.path.join(store.path, KEY.hex() + ".prog"))


def test_an_entry_others_may_write_is_removed(store):
    store.put(KEY, image())
    path = os.path.join(store.path, KEY.hex() + ".prog")
    os.chmod(path, 0o666)
    got, why = store.get(KEY)
    assert got is None and "mode" in why and not os.path.exists(path)


def test_the_least_recently_used_entries_go_first(tmp_path):
    size = len(encode(KEY, image()))
    keys = [bytes([i]) * 32 for i in range(4)]
    with Store.open(str(tmp_path / "cache"), create=True, max_bytes=3 * size) as s:
        for age, k in enumerate(keys[:3]):
            s.put(k, image())
            os.utime(os.path.join(s.path, s.entry_name(k)), ns=(10**9 * (age + 1),) * 2)
        assert s.get(keys[0])[0] is not None  # used: now the newest
        s.put(keys[3], image())  # one over the bound: the least recently used goes
        left = set(os.listdir(s.path))
        assert left == {s.entry_name(k) for k in (keys[0], keys[2], keys[3])}
        assert s.usage().entries == 3 and s.usage().size == 3 * size


def test_an_entry_bigger_than_the_bound_is_not_kept(tmp_path):
    with Store.open(str(tmp_path / "cache"), create=True, max_bytes=100) as s:
        s.put(KEY, image())
        assert os.listdir(s.path) == []


def test_a_stale_temporary_file_is_cleared(store):
    stale = os.path.join(store.path, ".tmp-1-deadbeef")
    Path(stale).write_bytes(b"half")
    os.utime(stale, (time.time() - 2 * compile_cache.STALE_TMP_S,) * 2)
    fresh = os.path.join(store.path, ".tmp-2-feedface")  # another xdpctl writing right now
    Path(fresh).write_bytes(b"half")
    assert store.usage().entries == 0 and os.path.exists(stale)  # looking (doctor) changes nothing
    store.evict()
    assert not os.path.exists(stale) and os.path.exists(fresh)


# --- one compile's use ---------------------------------------------------------------------


def test_an_empty_cache_dir_variable_turns_it_off(src, headers):
    look = Lookup(request(src), headers, environ={"XDPCTL_CACHE_DIR": ""})
    assert look.get() is None and "off" in look.note


def test_a_lookup_misses_then_hits(src, headers, tmp_path, monkeypatch):
    monkeypatch.setattr(compile_cache, "toolchain_identity", lambda environ=None: TOOLCHAIN)
    env = {"XDPCTL_CACHE_DIR": str(tmp_path / "cache")}
    first = Lookup(request(src), headers, environ=env)
    assert first.get() is None and first.note.startswith("compile cache: miss")
    first.put(image())
    assert "stored in" in first.note
    again = Lookup(request(src, pin_dir="/sys/fs/bpf/xdpctl/ns1/if3"), headers, environ=env)  # another interface
    assert again.get() == image() and again.note.startswith("compile cache: hit")


def test_a_refused_directory_means_compiling_with_a_note(src, headers, tmp_path, monkeypatch):
    monkeypatch.setattr(compile_cache, "toolchain_identity", lambda environ=None: TOOLCHAIN)
    path = tmp_path / "cache"
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)
    look = Lookup(request(src), headers, environ={"XDPCTL_CACHE_DIR": str(path)})
    assert look.get() is None and "not used" in look.note and "open to group or others" in look.note
    look.put(image())
    assert os.listdir(path) == []  # nothing written into a directory it refused
    state, what = compile_cache.describe({"XDPCTL_CACHE_DIR": str(path)})
    assert state == "warn" and "open to group or others" in what


def test_doctor_describes_the_cache(tmp_path):
    env = {"XDPCTL_CACHE_DIR": str(tmp_path / "cache")}
    assert compile_cache.describe(env) == ("ok", f"{tmp_path / 'cache'}: empty (the first compile makes it)")
    with Store.open(str(tmp_path / "cache"), create=True) as s:
        s.put(KEY, image())
    state, what = compile_cache.describe(env)
    assert state == "ok" and "1 program(s)" in what
    assert compile_cache.describe({"XDPCTL_CACHE_DIR": ""}) == ("ok", "off (XDPCTL_CACHE_DIR is empty)")


def test_preamble_is_what_the_docstring_says():
    data = encode(KEY, image())
    magic, fmt, header_len, key_, _ = struct.unpack_from("<8sII32s32s", data)
    assert (magic, fmt, key_) == (b"XDPCTLCC", compile_cache.FORMAT, KEY)
    assert data[80:80 + header_len].startswith(b"{")


def test_a_read_only_cache_still_serves_its_entries(store, monkeypatch):
    """A VM guest sees the host's cache read-only: a hit must not fail on
    marking the entry as recently used (it did: every lookup missed)."""
    store.put(KEY, image())

    def read_only(*args, **kw):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(compile_cache.os, "utime", read_only)
    got, why = store.get(KEY)
    assert got == image() and why == ""
