"""The sdist and the wheel carry the BPF C sources (the program is compiled
on the target machine, from the installed package), and the sdist builds a
wheel that still does. Built from a copy of the checkout; no root needed."""

from __future__ import annotations

import tarfile
import zipfile

import pytest
from click.testing import CliRunner
from package_build import BPF_SOURCES, REPO, build_sdist, build_wheel, copy_checkout, wheel_from_sdist

import xdpctl
from xdpctl.cli import cli


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packaging")
    src = copy_checkout(tmp)
    sdist = build_sdist(src, tmp / "sdist")
    return {
        "sdist": sdist,
        "wheel": build_wheel(src, tmp / "wheel"),
        "wheel_from_sdist": wheel_from_sdist(sdist, tmp / "from-sdist"),
    }


def wheel_names(path) -> set[str]:
    with zipfile.ZipFile(path) as z:
        return set(z.namelist())


def test_bpf_sources_exist():
    assert "xdpctl_kern.c" in BPF_SOURCES and "xdpctl_kern_user.h" in BPF_SOURCES


@pytest.mark.parametrize("which", ["wheel", "wheel_from_sdist"])
def test_wheel_carries_the_bpf_sources_and_the_entry_point(built, which):
    names = wheel_names(built[which])
    assert {f"xdpctl/bpf/{n}" for n in BPF_SOURCES} <= names
    # Every module of the checkout: pyproject lists the packages, and a new one must be added there.
    modules = {f"xdpctl/{p.relative_to(REPO / 'xdpctl')}" for p in (REPO / "xdpctl").rglob("*.py")}
    assert "xdpctl/cli/__init__.py" in modules and modules <= names, sorted(modules - names)
    dist_info = f"xdpctl-{xdpctl.__version__}.dist-info"
    with zipfile.ZipFile(built[which]) as z:
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
        metadata = z.read(f"{dist_info}/METADATA").decode()
    assert "xdpctl = xdpctl.cli:main" in entry_points
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    # BCC comes from the distribution; the PyPI package named bcc is another project.
    assert not any(r.split()[0].lower().startswith("bcc") for r in requires), requires


def test_wheel_files_are_the_checkout_sources(built):
    with zipfile.ZipFile(built["wheel_from_sdist"]) as z:
        for name in BPF_SOURCES:
            assert z.read(f"xdpctl/bpf/{name}") == (REPO / "bpf" / name).read_bytes(), name


def test_sdist_carries_sources_docs_and_man_pages(built):
    with tarfile.open(built["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {f"xdpctl/bpf/{n}" for n in BPF_SOURCES} <= names
    assert {"pyproject.toml", "README.md", "docs/commands.md", "docs/man/man1/xdpctl.1",
            "docs/man/man1/xdpctl-rule-add.1"} <= names
    assert not any("__pycache__" in n for n in names)


def test_version_option_prints_the_package_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"xdpctl, version {xdpctl.__version__}\n"
