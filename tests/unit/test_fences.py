"""Heavy imports stay fenced: BCC, pyroute2, rich and scapy are each imported
by one module only, so everything else imports (and tests) without them."""

from __future__ import annotations

import ast
from pathlib import Path

import xdpctl

PACKAGE = Path(xdpctl.__file__).parent
FENCES = {
    "bcc": "compiler.py",
    "pyroute2": "netlink.py",
    "rich": "render.py",
    "scapy": "frames.py",
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_each_heavy_library_is_imported_by_one_module():
    users: dict[str, list[str]] = {lib: [] for lib in FENCES}
    for path in sorted(PACKAGE.rglob("*.py")):
        for lib in imported_roots(path) & set(FENCES):
            users[lib].append(str(path.relative_to(PACKAGE)))
    assert users == {lib: [module] for lib, module in FENCES.items()}


def test_libbpf_is_called_through_one_module():
    callers = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if 'CDLL("libbpf' in p.read_text() or "libbpf.so" in p.read_text()]
    assert callers == ["libbpf.py"]
