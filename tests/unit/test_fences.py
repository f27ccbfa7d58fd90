"""Fences import-linter cannot state: libbpf is reached through ctypes, not an
import, so its one caller is checked by reading the sources. (The layers and
the fences of bcc, pyroute2, rich, scapy and click are import-linter
contracts in pyproject.toml: tests/unit/test_layers.py runs them.)"""

from __future__ import annotations

from pathlib import Path

import xdpctl

PACKAGE = Path(xdpctl.__file__).parent


def test_libbpf_is_called_through_one_module():
    callers = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if 'CDLL("libbpf' in p.read_text() or "libbpf.so" in p.read_text()]
    assert callers == ["kernel/libbpf.py"]
