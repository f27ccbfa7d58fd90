"""Building xdpctl's sdist and wheel the way pip does, from a copy of the
checkout, so that a test never writes build/ or *.egg-info into it (unit
tests run as nobody, and others may be building at the same moment).

Both are built through setuptools' PEP 517 hooks, which `pip wheel` and
`python -m build` call, with the running interpreter's setuptools (no build
isolation, so no download).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".hypothesis", "*.pyc")
BPF_SOURCES = sorted(p.name for p in (REPO / "bpf").iterdir() if p.suffix in (".c", ".h"))


def copy_checkout(dest: Path) -> Path:
    """The checkout's files (xdpctl/bpf stays a link to bpf/) under dest/src."""
    src = dest / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=NOT_SOURCES)
    return src


def _hook(source: Path, hook: str, outdir: Path) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(outdir)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"{hook} failed in {source}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return outdir / proc.stdout.strip().splitlines()[-1]


def build_sdist(source: Path, outdir: Path) -> Path:
    return _hook(source, "build_sdist", outdir)


def build_wheel(source: Path, outdir: Path) -> Path:
    return _hook(source, "build_wheel", outdir)


def wheel_from_sdist(sdist: Path, workdir: Path) -> Path:
    """Unpack sdist and build a wheel from it, as pip does for a source download."""
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python 3.12+, and backports
        tar.extractall(workdir / "unpacked", **safe)
    return build_wheel(workdir / "unpacked" / top, workdir / "wheel")
