"""The layering of xdpctl/ is declared once, as import-linter contracts in
pyproject.toml, and checked here: the contracts hold for the tree as it is,
and they do fail when a lower layer imports a higher one, or a fenced library
is imported outside its module (checked on a copy with such an import added)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("cli", "checks", "observe", "traffic", "lifecycle", "rules", "datapath", "kernel")


def lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports over the xdpctl package found in root, with root's pyproject."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint_imports), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
                          cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"})


@pytest.fixture
def copy(tmp_path):
    """A copy of the package and its pyproject.toml, to break on purpose."""
    shutil.copytree(REPO / "xdpctl", tmp_path / "xdpctl", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    return tmp_path


def test_contracts_hold():
    proc = lint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_every_layer_is_declared():
    """Each subpackage is a layer of the contract, and each layer a subpackage."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    declared = {name.strip().split(".")[1] for row in layers["layers"]
                for name in row.replace(":", "|").split("|") if name.strip().count(".") == 1}
    packages = {p.parent.name for p in (REPO / "xdpctl").glob("*/__init__.py")}
    assert packages == set(LAYERS)
    assert set(LAYERS) <= declared


def test_every_module_at_the_top_is_in_the_floor():
    """A module beside the subpackages (errors, validate, ...) is the floor
    every layer may use, so it must be declared there: one left out would be
    free to import any layer, and the layering would not hold."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    floor = {name.strip() for name in layers["layers"][-1].replace("|", ":").split(":")}
    modules = {f"xdpctl.{p.stem}" for p in (REPO / "xdpctl").glob("*.py")
               if p.stem not in ("__init__", "__main__")}
    assert modules == floor


@pytest.mark.parametrize("module, line, broken", [
    ("kernel/headers.py", "from ..rules import model", "each layer imports only the layers below it"),
    ("datapath/layout.py", "from ..lifecycle import state", "each layer imports only the layers below it"),
    ("errors.py", "from .kernel import libbpf", "each layer imports only the layers below it"),
    ("traffic/lab.py", "from ..observe import report", "each layer imports only the layers below it"),
    ("lifecycle/deploy.py", "import bcc", "BCC is imported by the compiler alone"),
    ("observe/report.py", "import rich", "rich is imported by the renderer alone"),
    ("lifecycle/state.py", "from pyroute2 import IPRoute", "pyroute2 is imported by the netlink module alone"),
    ("checks/selftest.py", "from scapy.all import Ether", "scapy is imported by the frame builder alone"),
    ("observe/report.py", "import prometheus_client", "prometheus_client is imported by the exporter alone"),
    ("cli/exporter.py", "from prometheus_client import start_http_server",
     "prometheus_client is imported by the exporter alone"),
])
def test_a_wrong_import_breaks_a_contract(copy, module, line, broken):
    path = copy / "xdpctl" / module
    text = path.read_text()
    # after the docstring and __future__ import, as a module-level import
    head, sep, tail = text.partition("from __future__ import annotations\n")
    path.write_text(head + sep + line + "\n" + tail if sep else line + "\n" + text)
    proc = lint(copy)
    assert proc.returncode != 0
    assert f"{broken} BROKEN" in proc.stdout, proc.stdout
