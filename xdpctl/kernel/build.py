"""What a compile takes: a C source, the function to load, -D flags, and the
directory its maps are pinned in.

The datapath (xdpctl/datapath/program.py) decides the flags; the compiler
(xdpctl/kernel/compiler.py) only turns a request into a loaded program.

The pin directory is a field of its own, not one of the defines: BCC uses it
only to create or open the maps, so the bytecode does not depend on it, and
the compile cache (xdpctl/kernel/compile_cache.py) keys on everything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The define that carries the pin directory to the C (BPF_TABLE_PINNED paths).
PIN_DEFINE = "XDPCTL_PIN_DIR"
# The program types xdpctl builds, by name: the kernel's BPF_PROG_TYPE_* codes.
PROG_TYPES = {"xdp": 6, "sched_cls": 3}

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.M)


@dataclass(frozen=True)
class BuildRequest:
    source: Path
    function: str
    defines: tuple[tuple[str, str | None], ...] = ()
    pin_dir: str | None = None  # None: the maps are not pinned
    variant: str = ""  # the variant in words, for messages ("drop-non-ip, kinds src,dport, 1024 rules")
    abi_version: int = 0  # the state ABI the program is built for (part of the cache key)
    prog_type: str = "xdp"  # one of PROG_TYPES: how the kernel loads it (XDP, or a TC classifier)

    def cflags(self) -> list[str]:
        flags = [f"-I{self.source.parent}"]
        if self.pin_dir is not None:
            flags.append(f'-D{PIN_DEFINE}="{self.pin_dir}"')
        for name, value in self.defines:
            flags.append(f"-D{name}" if value is None else f"-D{name}={value}")
        return flags

    def local_sources(self) -> list[Path]:
        """The source and every file of its own directory it includes, directly
        or not, includes first: all the compile reads besides the kernel's
        headers and BCC's. A quoted include is looked up beside the including
        file, then in the source's directory (the -I above); an angle one only
        there."""
        out: list[Path] = []
        seen: set[Path] = set()

        def walk(path: Path) -> None:
            if path in seen:
                return
            seen.add(path)
            for quote, name in _INCLUDE.findall(path.read_text()):
                bases = (path.parent, self.source.parent) if quote == '"' else (self.source.parent,)
                for base in bases:
                    if (base / name).is_file():
                        walk(base / name)
                        break
            out.append(path)

        walk(self.source)
        return out
