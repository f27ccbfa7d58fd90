"""Finding kernel headers for BCC.

BCC compiles against a kernel header tree and refuses to start without one.
Cloud, container and custom kernels often have no packaged headers for the
running release. XDP programs only need the stable UAPI headers, so a
distribution's headers for another release work. The order of preference:

1. BCC_KERNEL_SOURCE, when the user names a tree explicitly;
2. exact headers: /lib/modules/<release>/build (with source/ beside it);
3. /sys/kernel/kheaders.tar.xz (CONFIG_IKHEADERS), which BCC unpacks itself;
4. a fallback: the newest Debian/Ubuntu split tree under /usr/src, a common
   part (include/linux/kconfig.h) plus its flavour (include/generated).

BCC takes one tree through BCC_KERNEL_SOURCE and adds no flags of its own for
a second, so for a split fallback tree the common part goes in the variable
and the flavour's generated headers go in as -I flags.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HeadersMissing

KCONFIG = "include/linux/kconfig.h"
AUTOCONF = "include/generated/autoconf.h"

# uname -m to the kernel's arch/ directory name and the distribution's flavour.
_ARCH = {
    "x86_64": ("x86", "amd64", "generic"),
    "aarch64": ("arm64", "arm64", "generic"),
    "ppc64le": ("powerpc", "powerpc64le", "generic"),
    "s390x": ("s390", "s390x", "generic"),
}


@dataclass(frozen=True)
class KernelHeaders:
    kind: str            # "env", "exact", "kheaders" or "fallback"
    tree: str            # the tree BCC is pointed at ("" when BCC finds it itself)
    version: str         # the release the headers are for
    cflags: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    # Every header tree the compile reads (tree, and a split tree's flavour
    # part, or build/ and source/): what the compile cache keys on.
    trees: tuple[str, ...] = ()

    def describe(self, release: str) -> str:
        if self.kind == "fallback":
            return (
                f"no headers for kernel {release}; using the distribution's "
                f"{self.version} headers (XDP needs only the stable UAPI)"
            )
        if self.kind == "kheaders":
            return f"kernel {release} headers from /sys/kernel/kheaders.tar.xz"
        if self.kind == "env":
            return f"headers from BCC_KERNEL_SOURCE={self.tree}"
        return f"exact headers for kernel {release} in {self.tree}"


def distro_package_hint(root: Path = Path("/"), machine: str | None = None) -> str:
    """The package a user installs for headers, by distribution."""
    machine = machine or platform.machine()
    _, deb_flavour, ubuntu_flavour = _ARCH.get(machine, ("", "amd64", "generic"))
    ids = _os_release_ids(root)
    if "ubuntu" in ids:
        return f"apt install linux-headers-$(uname -r) (or linux-headers-{ubuntu_flavour})"
    if "debian" in ids:
        return f"apt install linux-headers-$(uname -r) (or linux-headers-{deb_flavour})"
    if ids & {"fedora", "rhel", "centos"}:
        return "dnf install kernel-devel-$(uname -r)"
    if "arch" in ids:
        return "pacman -S linux-headers"
    return "install your distribution's kernel headers package"


def _os_release_ids(root: Path) -> set[str]:
    try:
        text = (root / "etc/os-release").read_text()
    except OSError:
        return set()
    ids: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key in ("ID", "ID_LIKE"):
            ids.update(value.strip().strip('"').split())
    return ids


def _version_key(name: str) -> tuple:
    return tuple(int(n) if n.isdigit() else n for n in re.split(r"[.-]", name))


def _fallback(root: Path, machine: str) -> KernelHeaders | None:
    arch, _, _ = _ARCH.get(machine, (machine, "", ""))
    src = root / "usr/src"
    try:
        entries = sorted(os.listdir(src), key=_version_key, reverse=True)
    except OSError:
        return None
    trees = [src / e for e in entries if e.startswith("linux-headers-")]
    # A flavour tree (generated headers for this arch) and the common tree
    # whose name is a prefix of it: linux-headers-6.1.0-56-{amd64,common} on
    # Debian, linux-headers-6.8.0-45{-generic,} on Ubuntu.
    for build in trees:
        if not (build / AUTOCONF).is_file() or not (build / "arch" / arch).is_dir():
            continue
        if (build / KCONFIG).is_file():
            return KernelHeaders("fallback", str(build), build.name[len("linux-headers-"):],
                                 env={"BCC_KERNEL_SOURCE": str(build)}, trees=(str(build),))
        stem = build.name.rsplit("-", 1)[0]
        for common in (src / f"{stem}-common", src / stem):
            if (common / KCONFIG).is_file():
                gen = [
                    f"arch/{arch}/include/generated/uapi",
                    f"arch/{arch}/include/generated",
                    "include",
                    "include/generated/uapi",
                ]
                return KernelHeaders(
                    "fallback",
                    str(common),
                    build.name[len("linux-headers-"):],
                    cflags=tuple(f"-I{build / g}" for g in gen),
                    env={"BCC_KERNEL_SOURCE": str(common)},
                    trees=(str(common), str(build)),
                )
    return None


def find_kernel_headers(
    release: str | None = None,
    root: Path = Path("/"),
    environ: dict[str, str] | None = None,
    machine: str | None = None,
) -> KernelHeaders:
    """The headers BCC should use for the running kernel, or HeadersMissing."""
    release = release or os.uname().release
    environ = os.environ if environ is None else environ
    machine = machine or platform.machine()

    named = environ.get("BCC_KERNEL_SOURCE")
    if named:
        if not (Path(named) / KCONFIG).is_file():
            raise HeadersMissing(
                f"BCC_KERNEL_SOURCE={named} holds no {KCONFIG}; "
                "point it at a complete kernel header tree or unset it"
            )
        return KernelHeaders("env", named, release, env={"BCC_KERNEL_SOURCE": named}, trees=(named,))

    moddir = root / "lib/modules" / release
    # BCC reads build/, and source/ beside it when there is one.
    trees = tuple(str(moddir / sub) for sub in ("build", "source") if (moddir / sub).exists())
    for sub in ("build", "source"):
        if (moddir / sub / KCONFIG).is_file():
            return KernelHeaders("exact", str(moddir / sub), release, trees=trees)

    if (root / "sys/kernel/kheaders.tar.xz").is_file():
        return KernelHeaders("kheaders", "", release)

    found = _fallback(root, machine)
    if found:
        return found
    raise HeadersMissing(
        f"no kernel headers found for kernel {release}, and BCC needs them; "
        f"{distro_package_hint(root, machine)}"
    )
