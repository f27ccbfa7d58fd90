"""What a compile takes: a C source, the function to load, and -D flags.

The datapath (xdpctl/datapath/program.py) decides the flags; the compiler
(xdpctl/kernel/compiler.py) only turns a request into a loaded program.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuildRequest:
    source: Path
    function: str
    defines: tuple[tuple[str, str | None], ...] = ()

    def cflags(self) -> list[str]:
        flags = [f"-I{self.source.parent}"]
        for name, value in self.defines:
            flags.append(f"-D{name}" if value is None else f"-D{name}={value}")
        return flags
