"""bpffs detection, verifier-log summaries, program variants."""

from __future__ import annotations

import pytest

from xdpctl.kernel import bpffs
from xdpctl.kernel.compiler import compile_error_summary, verifier_summary
from xdpctl.datapath.program import FilterOptions, empty_program, filter_program

MOUNTINFO = """\
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
42 23 0:39 / /sys/fs/bpf rw,relatime - bpf bpf rw
55 23 0:50 / /mnt/with\\040space rw - bpf bpf rw
"""


def test_bpffs_mount_detection(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert bpffs.is_mounted("/sys/fs/bpf", str(info))
    assert bpffs.is_mounted("/mnt/with space", str(info))
    assert not bpffs.is_mounted("/sys", str(info))
    info.write_text(MOUNTINFO + "60 42 0:60 / /sys/fs/bpf rw - tmpfs tmpfs rw\n")
    assert not bpffs.is_mounted("/sys/fs/bpf", str(info))  # shadowed by a later mount


def test_a_fresh_sys_from_ip_netns_exec_marks_a_private_mount_namespace(tmp_path, monkeypatch):
    def no_access(path, *a, **k):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(bpffs.os, "stat", no_access)  # init's namespace unreadable
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert not bpffs.private_mount_namespace(str(info))
    info.write_text(MOUNTINFO + "49 46 0:40 / /sys rw,relatime - sysfs lab1 rw\n")
    assert bpffs.private_mount_namespace(str(info))


def test_mounting_bpffs_in_a_private_mount_namespace_is_refused(monkeypatch):
    monkeypatch.setattr(bpffs, "is_mounted", lambda path=bpffs.BPFFS: False)
    monkeypatch.setattr(bpffs, "private_mount_namespace", lambda: True)
    with pytest.raises(bpffs.BpffsMissing, match="xdpctl --netns NAME"):
        bpffs.ensure_mounted()


VERIFIER_LOG = """\
bpf: Failed to load program: Permission denied
0: R1=ctx() R10=fp0
; void *data = (void *)(long)ctx->data;
0: (79) r2 = *(u64 *)(r1 +0)
1: (71) r0 = *(u8 *)(r2 +12)
invalid access to packet, off=12 size=1, R2(id=0,off=12,r=0)
R2 offset is outside of the packet
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0

HINT: The invalid mem access 'inv' error can happen if you try to dereference memory without first using bpf_probe_read_kernel() to copy it to the BPF stack.
"""


def test_verifier_summary_is_the_reason():
    assert verifier_summary(VERIFIER_LOG) == "R2 offset is outside of the packet"


def test_compile_error_summary_names_the_line():
    out = "/virtual/main.c:12:5: error: use of undeclared identifier 'foo'\n1 error generated.\n"
    assert compile_error_summary(out) == "bpf source:12:5: error: use of undeclared identifier 'foo'"


def test_variants_are_flags_not_edits():
    plain = filter_program(FilterOptions(), None)
    drop = filter_program(FilterOptions(drop_non_ip=True), "/sys/fs/bpf/xdpctl/ns1/if2")
    assert plain.source == drop.source
    assert "-DXDPCTL_DROP_NON_IP" in drop.cflags() and "-DXDPCTL_DROP_NON_IP" not in plain.cflags()
    assert '-DXDPCTL_PIN_DIR="/sys/fs/bpf/xdpctl/ns1/if2"' in drop.cflags()
    assert not any(f.startswith("-DXDPCTL_PIN_DIR") for f in plain.cflags())
    assert empty_program().source.name == "empty_kern.c"


def test_options_bits_round_trip():
    for opts in (FilterOptions(), FilterOptions(drop_non_ip=True)):
        assert FilterOptions.from_bits(opts.bits) == opts


def test_capabilities_in_a_user_namespace_count_as_none(tmp_path):
    """CapEff inside `unshare -Ur` holds everything; the kernel honours none of
    it for BPF (tests/kernel/test_user_namespace.py runs it for real)."""
    from xdpctl.kernel import privileges

    status = tmp_path / "status"
    status.write_text("Name:\txdpctl\nCapEff:\t000001ffffffffff\n")
    # A user namespace that cannot be looked at is taken for the machine's.
    assert privileges.CAP_BPF in privileges.effective(str(status), "/proc/1/ns/user/none")
    not_the_machines = tmp_path / "user"  # any other inode than the machine's user namespace
    not_the_machines.write_text("")
    assert privileges.effective(str(status), str(not_the_machines)) == set()
    assert privileges.in_user_namespace(str(not_the_machines))
