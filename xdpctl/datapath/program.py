"""Which variant of the XDP program to build, as -D flags on unchanged C.

Nothing here edits C source: options become -D definitions, and every variant
is valid C. render_source() shows exactly what would be compiled (the hidden
--ebpf flag prints it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..kernel.build import BuildRequest
from . import contract
from .layout import Layout

FILTER_SOURCE = "xdpctl_kern.c"
EGRESS_SOURCE = "egress_kern.c"
EMPTY_SOURCE = "empty_kern.c"
EMPTY_FUNCTION = "xdpctl_empty"
EMPTY_TC_FUNCTION = "xdpctl_empty_tc"


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


def trace_capacity(snaplen: int) -> int:
    """The bytes a trace record holds for snaplen: the next power of two
    from 64 (so that a few variants serve every snaplen, and the cache hits)."""
    cap = 64
    while cap < min(snaplen, contract.TRACE_CAP_MAX):
        cap *= 2
    return cap


def filter_program(options: FilterOptions, pin_dir: str | None, layout: Layout = Layout(),
                   trace_cap: int = 0) -> BuildRequest:
    """The xdpctl filter; pin_dir=None builds it unpinned (tests, benchmarks).
    layout sizes the rule engine (none by default). trace_cap: the capture
    path of `xdpctl trace`, with records of that many bytes (0: none)."""
    defines: list[tuple[str, str | None]] = []
    if layout.engine and pin_dir is None:
        raise ValueError("the rule engine's tables are pinned: give a pin directory")
    if pin_dir is not None and ('"' in pin_dir or "\\" in pin_dir):
        raise ValueError(f"unusable pin directory {pin_dir!r}")
    if options.drop_non_ip:
        defines.append(("XDPCTL_DROP_NON_IP", None))
    if options.policy_deny:
        defines.append(("XDPCTL_POLICY_DENY", None))
    defines += layout.defines()
    variant = describe_variant(options, layout)
    if trace_cap:
        if pin_dir is None:
            raise ValueError("the trace maps are pinned: give a pin directory")
        if trace_cap != trace_capacity(trace_cap):
            raise ValueError(f"a trace record holds a power of two of bytes, 64 to {contract.TRACE_CAP_MAX}")
        defines += [("XDPCTL_TRACE", None), ("XDPCTL_TRACE_CAP", str(trace_cap))]
        variant += f", traced ({trace_cap}-byte records)"
    return BuildRequest(bpf_dir() / FILTER_SOURCE, contract.PROG_NAME, tuple(defines), pin_dir=pin_dir,
                        variant=variant, abi_version=contract.ABI_VERSION)


def describe_variant(options: FilterOptions, layout: Layout) -> str:
    """The variant in words, for messages: "drop-non-ip, policy deny, kinds
    src,dport, 1024 rules" ("count only" with neither options nor rules)."""
    parts = options.describe()
    if layout.engine:
        parts.append(layout.describe())
    return ", ".join(parts) or "count only"


def empty_program() -> BuildRequest:
    return BuildRequest(bpf_dir() / EMPTY_SOURCE, EMPTY_FUNCTION)


def egress_program(pin_dir: str | None) -> BuildRequest:
    """The TC egress program that fills the flow table of the interface
    whose state is in pin_dir (None: unpinned maps, for benchmarks). It
    takes no flags: what it does is the same for every interface."""
    if pin_dir is not None and ('"' in pin_dir or "\\" in pin_dir):
        raise ValueError(f"unusable pin directory {pin_dir!r}")
    return BuildRequest(bpf_dir() / EGRESS_SOURCE, contract.EGRESS_PROG_NAME, (), pin_dir=pin_dir,
                        variant="egress flow recorder", abi_version=contract.ABI_VERSION, prog_type="sched_cls")


def empty_tc_program() -> BuildRequest:
    """The empty TC program: the baseline the egress program is measured against."""
    return BuildRequest(bpf_dir() / EMPTY_SOURCE, EMPTY_TC_FUNCTION, prog_type="sched_cls")


def render_source(request: BuildRequest, extra_cflags: list[str] | tuple[str, ...] = ()) -> str:
    """The flags and every local source file that the compile reads."""
    out = [f"/* xdpctl: BCC compiles {request.source.name} with:"]
    out += [f" *   {flag}" for flag in (*request.cflags(), *extra_cflags)]
    out.append(" */")
    for path in request.local_sources():
        out.append(f"\n/* ---- {path.name} ---- */\n{path.read_text()}")
    return "\n".join(out)
