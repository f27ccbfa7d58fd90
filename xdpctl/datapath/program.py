"""Which variant of the XDP program to build, as -D flags on unchanged C.

Nothing here edits C source: options become -D definitions, and every variant
is valid C. render_source() shows exactly what would be compiled (the hidden
--ebpf flag prints it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..kernel.build import BuildRequest
from . import contract
from .layout import Layout

FILTER_SOURCE = "xdpctl_kern.c"
EMPTY_SOURCE = "empty_kern.c"
EMPTY_FUNCTION = "xdpctl_empty"


def bpf_dir() -> Path:
    """The bpf/ sources, shipped inside the package (xdpctl/bpf links to bpf/)."""
    return Path(__file__).resolve().parent.parent / "bpf"


@dataclass(frozen=True)
class FilterOptions:
    """What the user asked the program to do (recorded in the meta map)."""

    drop_non_ip: bool = False
    policy_deny: bool = False

    @property
    def bits(self) -> int:
        return (contract.OPT_DROP_NON_IP if self.drop_non_ip else 0) | (
            contract.OPT_POLICY_DENY if self.policy_deny else 0)

    @classmethod
    def from_bits(cls, bits: int) -> "FilterOptions":
        return cls(drop_non_ip=bool(bits & contract.OPT_DROP_NON_IP),
                   policy_deny=bool(bits & contract.OPT_POLICY_DENY))

    @property
    def policy(self) -> str:
        return "deny" if self.policy_deny else "allow"

    def describe(self) -> list[str]:
        out = ["drop-non-ip"] if self.drop_non_ip else []
        if self.policy_deny:
            out.append("policy deny")
        return out


def filter_program(options: FilterOptions, pin_dir: str | None, layout: Layout = Layout()) -> BuildRequest:
    """The xdpctl filter; pin_dir=None builds it unpinned (tests, benchmarks).
    layout sizes the rule engine (none by default)."""
    defines: list[tuple[str, str | None]] = []
    if layout.engine and pin_dir is None:
        raise ValueError("the rule engine's tables are pinned: give a pin directory")
    if pin_dir is not None:
        if '"' in pin_dir or "\\" in pin_dir:
            raise ValueError(f"unusable pin directory {pin_dir!r}")
        defines.append(("XDPCTL_PIN_DIR", f'"{pin_dir}"'))
    if options.drop_non_ip:
        defines.append(("XDPCTL_DROP_NON_IP", None))
    if options.policy_deny:
        defines.append(("XDPCTL_POLICY_DENY", None))
    defines += layout.defines()
    return BuildRequest(bpf_dir() / FILTER_SOURCE, contract.PROG_NAME, tuple(defines))


def empty_program() -> BuildRequest:
    return BuildRequest(bpf_dir() / EMPTY_SOURCE, EMPTY_FUNCTION)


_LOCAL_INCLUDE = re.compile(r'^#include "([^"]+)"', re.M)


def render_source(request: BuildRequest, extra_cflags: list[str] | tuple[str, ...] = ()) -> str:
    """The flags and every local source file that the compile reads."""
    out = [f"/* xdpctl: BCC compiles {request.source.name} with:"]
    out += [f" *   {flag}" for flag in (*request.cflags(), *extra_cflags)]
    out.append(" */")
    seen: set[str] = set()

    def emit(path: Path) -> None:
        if path.name in seen:
            return
        seen.add(path.name)
        text = path.read_text()
        for name in _LOCAL_INCLUDE.findall(text):
            if (path.parent / name).is_file():
                emit(path.parent / name)
        out.append(f"\n/* ---- {path.name} ---- */\n{text}")

    emit(request.source)
    return "\n".join(out)
