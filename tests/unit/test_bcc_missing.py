"""Without BCC's Python bindings, xdpctl says which distribution package to
install, and names the PyPI impostor when that is what `import bcc` found."""

from __future__ import annotations

import sys
import types

import pytest
from click.testing import CliRunner

from xdpctl.kernel import compiler
from xdpctl.cli import cli
from xdpctl.errors import BccMissing
from xdpctl.datapath.program import empty_program

PACKAGES = ("python3-bpfcc", "python3-bcc", "python-bcc", "Debian/Ubuntu", "Fedora", "Arch")


@pytest.fixture
def no_bcc(monkeypatch):
    monkeypatch.setitem(sys.modules, "bcc", None)  # `import bcc` raises ImportError


@pytest.fixture
def pypi_bcc(monkeypatch):
    impostor = types.ModuleType("bcc")
    impostor.__file__ = "/venv/lib/python3.11/site-packages/bcc/__init__.py"
    monkeypatch.setitem(sys.modules, "bcc", impostor)


def test_missing_bcc_names_the_package_of_each_distribution(no_bcc):
    with pytest.raises(BccMissing) as err:
        compiler.compile_and_load(empty_program())
    message = str(err.value)
    for word in PACKAGES:
        assert word in message
    assert "--system-site-packages" in message and "unrelated" in message
    assert not compiler.bcc_available()


def test_the_pypi_package_named_bcc_is_called_out(pypi_bcc):
    with pytest.raises(BccMissing) as err:
        compiler.compile_and_load(empty_program())
    message = str(err.value)
    assert "/venv/lib/python3.11/site-packages/bcc/__init__.py" in message
    assert "unrelated PyPI package" in message and "pip uninstall bcc" in message
    for word in PACKAGES:
        assert word in message


def test_cli_prints_it_as_one_line(no_bcc, monkeypatch):
    import xdpctl.lifecycle.attach

    def attach_that_compiles(app, ifname, **kwargs):
        compiler.compile_and_load(empty_program())  # where attach's deploy ends up

    monkeypatch.setattr(xdpctl.lifecycle.attach, "attach", attach_that_compiles)
    result = CliRunner().invoke(cli, ["attach", "eth0"])
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("xdpctl: error: BCC's Python bindings are not importable")
    for word in PACKAGES:
        assert word in line
