"""The compile cache on a real kernel: a warm attach loads the very program a
cold compile loads (same tag, same instructions), and it filters and counts;
replaces and rule changes that need a new program come from the cache; a
damaged entry is compiled again; the maps a cached load pins are those BCC
pins; a pin holding another map means compiling; and a program the verifier
rejects, from the cache too, is one line naming the kernel and the variant,
with the log under -v and nothing left behind.

Each test has a cache directory of its own (XDPCTL_CACHE_DIR, removed with
tmp_path), so "cold" means empty.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import attached_prog_id, expected
from state_checks import attachment, local_snapshot, one_line_error, tree
from xdpctl.datapath import contract
from xdpctl.datapath.layout import Layout
from xdpctl.datapath.program import FilterOptions, filter_program
from xdpctl.kernel import compile_cache, libbpf
from xdpctl.kernel.compiler import compile_and_load
from xdpctl.kernel.headers import find_kernel_headers
from xdpctl.kernel.kernel_version import running_release
from xdpctl.kernel.program_image import INSN, ProgramImage
from xdpctl.lifecycle import namespaces
from xdpctl.lifecycle.state import scratch_dir
from xdpctl.traffic import frames

pytestmark = pytest.mark.kernel


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache for this test (xdpctl makes the directory itself),
    removed afterwards (pytest keeps tmp_path for a while)."""
    path = tmp_path / "cache"
    monkeypatch.setenv(compile_cache.ENV_DIR, str(path))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def prog(klab) -> libbpf.ProgInfo:
    fd = libbpf.prog_fd_by_id(attached_prog_id(klab))
    try:
        return libbpf.prog_info(fd)
    finally:
        os.close(fd)


def verbose(klab, *args) -> str:
    """Run xdpctl -v ARGS; its compile cache note (stderr)."""
    r = klab.xdpctl("-v", *args)
    notes = [line for line in r.stderr.splitlines() if line.startswith("note: compile cache:")]
    assert len(notes) == 1, r.stderr
    return notes[0]


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.prog"))


def pinned_maps(klab) -> dict[str, tuple]:
    """Every map of the program pinned for the lab's attachment: pin -> (name,
    type, key, value, max entries, flags). The namespace's handle (a map
    xdpctl makes itself, on kernels that give one) is not the program's."""
    att = attachment(klab)
    out = {}
    for pin in att.pins():
        if pin.startswith("prog") or pin == namespaces.PIN_NETNS:
            continue
        with libbpf.opened(att.pin(pin)) as fd:
            i = libbpf.map_info(fd)
            out[pin] = (i.name, i.type, i.key_size, i.value_size, i.max_entries, i.flags)
    return out


def test_a_warm_attach_loads_the_program_a_cold_compile_loads(klab, cache):
    assert verbose(klab, "attach", klab.iface, "--drop-non-ip").startswith("note: compile cache: miss")
    cold = prog(klab)
    assert len(entries(cache)) == 1
    klab.xdpctl("detach", klab.iface)
    assert verbose(klab, "attach", klab.iface, "--drop-non-ip") == f"note: compile cache: hit ({cache})"
    warm = prog(klab)
    assert warm.id != cold.id
    assert (warm.tag, warm.xlated_len, warm.name, warm.type) == (cold.tag, cold.xlated_len, cold.name, cold.type)
    # ... and it is the program: every class counted, non-IP dropped.
    mix = frames.build("mix", klab.lab.endpoints())
    sent = klab.send(mix, count=len(mix) * 5)
    assert klab.wait_for_total(len(mix) * 5) == expected(sent, drop_non_ip=True)


def test_a_replace_and_a_rule_change_come_from_the_cache(klab, cache):
    iface = klab.iface
    assert "miss" in verbose(klab, "attach", iface)
    assert "miss" in verbose(klab, "attach", iface, "--drop-non-ip")  # a replace: a new variant
    assert "hit" in verbose(klab, "attach", iface)  # back: both are kept
    out = klab.xdpctl("-v", "attach", iface, "--drop-non-ip")
    assert "replaced xdpctl's program" in out.stdout and "compile cache: hit" in out.stderr
    # A new kind of match needs a new program: compiled once, then from the cache.
    assert "miss" in verbose(klab, "rule", "add", iface, "drop", "--proto", "udp")
    first = klab.xdpctl.json("status")["interfaces"][0]
    klab.xdpctl("detach", iface)
    assert "hit" in verbose(klab, "attach", iface, "--drop-non-ip")
    assert "hit" in verbose(klab, "rule", "add", iface, "drop", "--proto", "udp")
    again = klab.xdpctl.json("status")["interfaces"][0]
    assert again["options"] == first["options"] and again["prog_id"] != first["prog_id"]
    ep = klab.lab.endpoints()
    udp, arp = frames.udp_frame(ep, b"dropped by the rule"), frames.build("non-ip", ep)[0]
    klab.send([udp, arp], count=20)
    got = klab.wait_for_total(20)
    assert got["ipv4/udp"]["drop"]["packets"] == 10 and got["arp"]["drop"]["packets"] == 10
    assert got["ipv4/udp"]["pass"]["packets"] == 0
    assert len(entries(cache)) == 3  # count-only, drop-non-ip, drop-non-ip with the UDP rule's layout


def test_a_damaged_entry_is_compiled_again(klab, cache):
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    cold = prog(klab)
    (entry,) = entries(cache)
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF  # in the instructions: a checksum mismatch
    entry.write_bytes(bytes(data))
    klab.xdpctl("detach", klab.iface)
    note = verbose(klab, "attach", klab.iface, "--drop-non-ip")
    assert note.startswith("note: compile cache: miss (removed ") and "checksum mismatch" in note
    assert note.endswith(f"stored in {cache}")
    assert prog(klab).tag == cold.tag  # compiled again: the same program
    ep = klab.lab.endpoints()
    sent = klab.send([frames.udp_frame(ep, b"x"), frames.build("non-ip", ep)[0]], count=10)
    assert klab.wait_for_total(10) == expected(sent, drop_non_ip=True)
    entry.write_bytes(b"XDPCTLCC")  # truncated: also compiled again
    klab.xdpctl("detach", klab.iface)
    assert "shorter than its preamble" in verbose(klab, "attach", klab.iface, "--drop-non-ip")
    klab.xdpctl("detach", klab.iface)
    assert "hit" in verbose(klab, "attach", klab.iface, "--drop-non-ip")  # and kept, whole, again


def test_the_maps_a_cached_load_pins_are_those_bcc_pins(klab, cache):
    klab.xdpctl("attach", klab.iface, "--policy", "deny")
    klab.xdpctl("rule", "add", klab.iface, "pass", "--src", "198.51.100.0/24", "--dport", "53")
    by_bcc = pinned_maps(klab)
    assert {"counters", "meta", "config", "rules"} <= set(by_bcc) and len(by_bcc) == 6  # + tables_N, hits_N
    klab.xdpctl("detach", klab.iface)
    assert "hit" in verbose(klab, "attach", klab.iface, "--policy", "deny")
    assert "hit" in verbose(klab, "rule", "add", klab.iface, "pass", "--src", "198.51.100.0/24", "--dport", "53")
    assert pinned_maps(klab) == by_bcc
    # ... and the program uses them: every map it refers to is one of the pins.
    ids = set()
    for pin in by_bcc:
        with libbpf.opened(attachment(klab).pin(pin)) as fd:
            ids.add(libbpf.map_info(fd).id)
    assert prog(klab).map_ids and set(prog(klab).map_ids) <= ids


def test_a_pin_holding_another_map_means_compiling(cache):
    with scratch_dir("cache") as d:
        request = filter_program(FilterOptions(drop_non_ip=True), d)
        first = compile_and_load(request)
        first.close()
        for pin in os.listdir(d):
            os.unlink(os.path.join(d, pin))
        # counters, but with room for 20 classes: not what the program was built against
        fd = libbpf.map_create(6, "xdpctl_counters", 4, 32, 20)
        try:
            libbpf.obj_pin(fd, os.path.join(d, contract.PIN_COUNTERS))
            theirs = libbpf.map_info(fd).id
        finally:
            os.close(fd)
        again = compile_and_load(request)
        try:
            assert not again.cached
            assert "is not the one the cached program was built for" in again.cache
            assert libbpf.map_info(again.map_fd("xdpctl_counters")).id == theirs  # BCC, as ever, took the pin
        finally:
            again.close()
        assert sorted(os.listdir(d)) == ["counters", "meta"]


# --- a program the verifier rejects -------------------------------------------------------

# r2 = ctx->data; r0 = *(u8 *)(r2 + 20); exit: a read with no bounds check.
REJECTED = INSN.pack(0x61, 2 | 1 << 4, 0, 0) + INSN.pack(0x71, 0 | 2 << 4, 20, 0) + INSN.pack(0x95, 0, 0, 0)


def plant_rejected(options: FilterOptions, layout: Layout = Layout()) -> None:
    """Put, under the key of this variant, a program the verifier refuses:
    the only way to make the real attach path meet a rejection on a kernel
    that accepts every variant xdpctl builds."""
    request = filter_program(options, "/sys/fs/bpf/anywhere", layout)
    headers = find_kernel_headers()
    key = compile_cache.cache_key(compile_cache.key_material(request, headers, compile_cache.toolchain_identity()))
    image = ProgramImage(contract.PROG_NAME, "GPL", libbpf.BPF_PROG_TYPE_XDP, REJECTED, (), ())
    with compile_cache.Store.open(compile_cache.configured_dir(), create=True) as store:
        store.put(key, image)


def test_a_rejected_attach_is_one_line_naming_kernel_and_variant_and_leaves_nothing(klab, cache):
    plant_rejected(FilterOptions(drop_non_ip=True, policy_deny=True))
    before = local_snapshot(klab)
    r = klab.xdpctl("attach", klab.iface, "--drop-non-ip", "--policy", "deny", check=False)
    line = one_line_error(r, 1, f"the verifier of Linux {running_release()} rejected the program "
                                "(variant: drop-non-ip, policy deny): ")
    assert "invalid access to packet" in line or "outside of the packet" in line
    assert "Traceback" not in r.stderr
    assert local_snapshot(klab) == before and attached_prog_id(klab) == 0
    r = klab.xdpctl("-v", "attach", klab.iface, "--drop-non-ip", "--policy", "deny", check=False)
    assert r.returncode == 1 and "processed" in r.stderr and "R2" in r.stderr  # the verifier's log
    assert r.stderr.strip().splitlines()[-1].startswith("xdpctl: error: the verifier of Linux")
    assert local_snapshot(klab) == before


def test_a_rejected_replace_leaves_the_old_program(klab, cache):
    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "tcp")
    old, pins = attached_prog_id(klab), tree(klab)
    current = Layout.unpack(attachment(klab).read_meta().layout)
    plant_rejected(FilterOptions(drop_non_ip=True), current)
    r = klab.xdpctl("attach", klab.iface, "--drop-non-ip", check=False)
    one_line_error(r, 1, f"the verifier of Linux {running_release()} rejected the program "
                         "(variant: drop-non-ip, kinds proto, 1024 rules, 64 general)")
    assert attached_prog_id(klab) == old and tree(klab) == pins
    (rule,) = klab.xdpctl.json("rule", "list", klab.iface)["rules"]
    assert rule["action"] == "drop"


HIT_WITHOUT_BCC = """
import sys
from xdpctl.datapath.program import FilterOptions, filter_program
from xdpctl.kernel.compiler import compile_and_load
from xdpctl.lifecycle import namespaces
from xdpctl.lifecycle.state import scratch_dir
with scratch_dir("cache") as d:
    loaded = compile_and_load(filter_program(FilterOptions(policy_deny=True), d))
    print(loaded.cached, "bcc" in sys.modules)
    loaded.close()
"""


def test_a_hit_does_not_import_bcc(cache):
    """BCC's import is the first cost of a compile; a hit never pays it."""
    import subprocess
    import sys

    runs = [subprocess.run([sys.executable, "-c", HIT_WITHOUT_BCC], capture_output=True, text=True, cwd="/",
                           timeout=300) for _ in range(2)]
    assert [r.stdout.split() for r in runs] == [["False", "True"], ["True", "False"]], [r.stderr for r in runs]
