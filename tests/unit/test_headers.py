"""Kernel header discovery against fake filesystem roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdpctl.errors import HeadersMissing
from xdpctl.kernel.headers import AUTOCONF, KCONFIG, find_kernel_headers

RELEASE = "6.18.44-custom"


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")


def debian_split(root: Path, version: str = "6.1.0-56") -> None:
    touch(root / f"usr/src/linux-headers-{version}-common" / KCONFIG)
    touch(root / f"usr/src/linux-headers-{version}-amd64" / AUTOCONF)
    (root / f"usr/src/linux-headers-{version}-amd64/arch/x86").mkdir(parents=True)


def test_exact_headers_win(tmp_path):
    touch(tmp_path / "lib/modules" / RELEASE / "build" / KCONFIG)
    debian_split(tmp_path)
    h = find_kernel_headers(RELEASE, tmp_path, environ={}, machine="x86_64")
    assert h.kind == "exact" and h.env == {} and h.cflags == ()


def test_kheaders_before_fallback(tmp_path):
    touch(tmp_path / "sys/kernel/kheaders.tar.xz")
    debian_split(tmp_path)
    assert find_kernel_headers(RELEASE, tmp_path, environ={}, machine="x86_64").kind == "kheaders"


def test_debian_split_fallback_points_bcc_at_common_and_adds_generated(tmp_path):
    debian_split(tmp_path, "6.1.0-40")
    debian_split(tmp_path, "6.1.0-56")
    h = find_kernel_headers(RELEASE, tmp_path, environ={}, machine="x86_64")
    assert h.kind == "fallback"
    assert h.version == "6.1.0-56-amd64"
    assert h.env == {"BCC_KERNEL_SOURCE": str(tmp_path / "usr/src/linux-headers-6.1.0-56-common")}
    build = tmp_path / "usr/src/linux-headers-6.1.0-56-amd64"
    assert f"-I{build}/include" in h.cflags
    assert f"-I{build}/arch/x86/include/generated" in h.cflags
    assert "6.1.0-56-amd64" in h.describe(RELEASE) and RELEASE in h.describe(RELEASE)


def test_ubuntu_layout_fallback(tmp_path):
    touch(tmp_path / "usr/src/linux-headers-6.8.0-45" / KCONFIG)
    touch(tmp_path / "usr/src/linux-headers-6.8.0-45-generic" / AUTOCONF)
    (tmp_path / "usr/src/linux-headers-6.8.0-45-generic/arch/x86").mkdir(parents=True)
    h = find_kernel_headers(RELEASE, tmp_path, environ={}, machine="x86_64")
    assert h.env["BCC_KERNEL_SOURCE"].endswith("linux-headers-6.8.0-45")


def test_wrong_arch_tree_is_not_used(tmp_path):
    touch(tmp_path / "usr/src/linux-headers-6.1.0-56-common" / KCONFIG)
    touch(tmp_path / "usr/src/linux-headers-6.1.0-56-arm64" / AUTOCONF)
    (tmp_path / "usr/src/linux-headers-6.1.0-56-arm64/arch/arm64").mkdir(parents=True)
    with pytest.raises(HeadersMissing):
        find_kernel_headers(RELEASE, tmp_path, environ={}, machine="x86_64")


def test_missing_names_the_package(tmp_path):
    touch(tmp_path / "etc/os-release")
    (tmp_path / "etc/os-release").write_text('ID=debian\n')
    with pytest.raises(HeadersMissing, match=r"linux-headers-amd64"):
        find_kernel_headers(RELEASE, tmp_path, environ={}, machine="x86_64")
    (tmp_path / "etc/os-release").write_text('ID=ubuntu\nID_LIKE=debian\n')
    with pytest.raises(HeadersMissing, match=r"linux-headers-generic"):
        find_kernel_headers(RELEASE, tmp_path, environ={}, machine="x86_64")


def test_named_tree_must_be_complete(tmp_path):
    with pytest.raises(HeadersMissing, match="BCC_KERNEL_SOURCE"):
        find_kernel_headers(RELEASE, tmp_path, environ={"BCC_KERNEL_SOURCE": str(tmp_path)}, machine="x86_64")
    touch(tmp_path / KCONFIG)
    h = find_kernel_headers(RELEASE, tmp_path, environ={"BCC_KERNEL_SOURCE": str(tmp_path)}, machine="x86_64")
    assert h.kind == "env"
