"""Failures print one clear line, exit non-zero and change nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import attached_prog_id, snapshot
from xdpctl.errors import CompileFailed, VerifierRejected
from xdpctl.kernel.build import BuildRequest

pytestmark = pytest.mark.kernel


def assert_failed_cleanly(klab, args, code, *fragments, env=None, prefix=()):
    before = snapshot(klab)
    cmd = [*prefix, sys.executable, "-m", "xdpctl", "--netns", klab.lab.host_netns, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdpctl: error: "), r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    assert snapshot(klab) == before
    return lines[0]


def test_native_unsupported_says_so_and_suggests_generic(klab):
    # Loopback has no native XDP support in any kernel.
    assert_failed_cleanly(klab, ["attach", "lo"], 1, "does not support native XDP", "--mode generic")


def test_offload_on_a_veth_fails_cleanly(klab):
    assert_failed_cleanly(klab, ["attach", klab.iface, "--mode", "offload"], 1,
                          "cannot take an offloaded XDP program", "--mode native")


def test_modes_do_not_mix_on_one_interface(klab):
    klab.xdpctl("attach", klab.iface)
    assert_failed_cleanly(klab, ["attach", klab.iface, "--mode", "generic"], 1,
                          "runs in native mode", f"xdpctl detach {klab.iface}")


def test_unknown_interface_and_long_name(klab):
    assert_failed_cleanly(klab, ["attach", "nosuch0"], 1, "no interface named 'nosuch0'")
    assert_failed_cleanly(klab, ["attach", "x" * 16], 2, "at most 15")
    assert_failed_cleanly(klab, ["stats", "nosuch0"], 1, "no interface named")


def test_missing_capabilities_change_nothing(klab):
    drop = ["setpriv", "--inh-caps=-bpf,-sys_admin", "--bounding-set=-bpf,-sys_admin", "--"]
    assert_failed_cleanly(klab, ["attach", klab.iface], 1, "CAP_BPF", prefix=drop)
    drop_net = ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"]
    assert_failed_cleanly(klab, ["attach", klab.iface], 1, "CAP_NET_ADMIN", prefix=drop_net)


def test_missing_bcc_names_the_package(klab):
    code = ("import sys; sys.modules['bcc'] = None; from xdpctl.cli import main; "
            f"main(['--netns', '{klab.lab.host_netns}', 'attach', '{klab.iface}'])")
    before = snapshot(klab)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 1 and "python3-bpfcc" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert snapshot(klab) == before


def test_incomplete_named_headers_are_refused(klab, tmp_path):
    import os

    env = dict(os.environ, BCC_KERNEL_SOURCE=str(tmp_path))
    assert_failed_cleanly(klab, ["attach", klab.iface], 1, "BCC_KERNEL_SOURCE", "kconfig.h", env=env)


# In the new mount namespace, make /sys private before touching /sys/fs/bpf, so
# nothing propagates back to the machine (and "/" need not be a mount point).
PRIVATE_SYS = "mount --make-rprivate /sys && "


def test_bpffs_is_mounted_when_missing(klab):
    """In a private mount namespace without bpffs, attach mounts it itself."""
    script = (
        PRIVATE_SYS + "umount /sys/fs/bpf && ! grep -q ' /sys/fs/bpf ' /proc/self/mountinfo && "
        f"{sys.executable} -m xdpctl --netns {klab.lab.host_netns} attach {klab.iface} && "
        "grep ' /sys/fs/bpf ' /proc/self/mountinfo && "
        f"{sys.executable} -m xdpctl --netns {klab.lab.host_netns} stats --json"
    )
    r = subprocess.run(["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", script],
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert " - bpf bpf " in r.stdout and '"managed": true' in r.stdout
    assert attached_prog_id(klab) != 0  # the program outlives the private bpffs


def test_bpffs_missing_without_cap_sys_admin(klab):
    script = (
        PRIVATE_SYS + "umount /sys/fs/bpf && exec setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin -- "
        f"{sys.executable} -m xdpctl --netns {klab.lab.host_netns} attach {klab.iface}"
    )
    # setns into the lab needs CAP_SYS_ADMIN too; enter it first, then drop it.
    script = script.replace(f"--netns {klab.lab.host_netns} ", "")
    r = subprocess.run(["unshare", "--mount", "--propagation", "unchanged", "nsenter",
                        f"--net=/var/run/netns/{klab.lab.host_netns}", "sh", "-c", script],
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 1
    assert "mounting bpffs" in r.stderr and "CAP_SYS_ADMIN" in r.stderr
    assert attached_prog_id(klab) == 0


def bad_program(tmp_path: Path, body: str) -> BuildRequest:
    src = tmp_path / "bad_kern.c"
    src.write_text("#include <uapi/linux/bpf.h>\nint bad(struct xdp_md *ctx)\n{\n" + body + "\n}\n")
    return BuildRequest(src, "bad")


def test_verifier_rejection_shows_the_verifiers_reason(tmp_path):
    from xdpctl.kernel.compiler import compile_and_load

    # Reads the packet with no bounds check: the verifier must refuse it.
    req = bad_program(tmp_path, "unsigned char *p = (void *)(long)ctx->data;\nreturn p[20];")
    with pytest.raises(VerifierRejected) as err:
        compile_and_load(req)
    assert "invalid access to packet" in str(err.value) or "outside of the packet" in str(err.value)
    assert "processed" in err.value.detail


def test_compile_error_shows_the_compilers_line(tmp_path):
    from xdpctl.kernel.compiler import compile_and_load

    with pytest.raises(CompileFailed) as err:
        compile_and_load(bad_program(tmp_path, "return no_such_symbol;"))
    assert "no_such_symbol" in str(err.value) and "error:" in str(err.value)


@pytest.mark.parametrize("point", ["compile", "swap"])
def test_bpffs_unmounted_during_a_change_is_named(klab, tmp_path, point):
    """Issue 12: bpffs lazily unmounted (umount -l) under a change that
    recompiles gave 'compiling ... failed' or 'the verifier rejected the
    program'. It is named, and nothing on the interface changes. (The unmount
    is in a mount namespace of xdpctl's own, so the machine's bpffs stays.)"""
    from test_guarantees_concurrency import _PAUSED

    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp")
    rules = klab.xdpctl("rule", "list", klab.iface, "--json").stdout
    prog = attached_prog_id(klab)
    at, go = tmp_path / "at", tmp_path / "go"
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _PAUSED,
                          str(at), str(go), point, "--netns", klab.lab.host_netns,
                          "rule", "add", klab.iface, "drop", "--vlan", "5"],  # a new kind of match: a recompile
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        deadline = time.monotonic() + 60
        while not at.exists():
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        subprocess.run(["nsenter", "--mount", "--target", str(p.pid), "umount", "-l", "/sys/fs/bpf"], check=True)
    finally:
        go.touch()
        out, err = p.communicate(timeout=120)
    assert p.returncode == 1, (p.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdpctl: error: bpffs was unmounted from /sys/fs/bpf"), err
    assert "verifier" not in err and "compiling" not in err
    # Stopped past the swap, it leaves a pending change: the next command puts the old program back.
    assert klab.xdpctl("rule", "list", klab.iface, "--json").stdout == rules
    assert attached_prog_id(klab) == prog
