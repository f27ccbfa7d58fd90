"""doctor: what xdpctl needs from this machine, checked one by one, each
with what to do when it is missing. Nothing is changed.

docs/troubleshooting.md follows these checks, message by message.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass

from ..datapath import contract
from ..kernel import privileges
from ..kernel.bpffs import BPFFS, is_mounted, private_mount_namespace
from ..errors import XdpctlError

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _privileges(caps: set[int]) -> Check:
    names = {privileges.NAMES[c] for c in caps if c in privileges.NAMES}
    missing = []
    if not ({"CAP_BPF", "CAP_SYS_ADMIN"} & names):
        missing.append("CAP_BPF")
    if "CAP_NET_ADMIN" not in names:
        missing.append("CAP_NET_ADMIN")
    if not ({"CAP_PERFMON", "CAP_SYS_ADMIN"} & names):
        missing.append("CAP_PERFMON")  # the verifier wants it for packet-pointer arithmetic
    held = ", ".join(sorted(names)) or "none of CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN"
    if missing:
        if privileges.in_user_namespace():
            return Check("privileges", FAIL, f"holds {held}; missing {' and '.join(missing)}",
                         f"run as root outside it: {privileges.USER_NAMESPACE_NOTE}")
        return Check("privileges", FAIL, f"holds {held}; missing {' and '.join(missing)}",
                     "run as root (sudo xdpctl ...), or grant the capabilities")
    if "CAP_SYS_ADMIN" not in names:
        return Check("privileges", WARN, f"holds {held}",
                     "without CAP_SYS_ADMIN xdpctl cannot mount bpffs or name foreign programs")
    return Check("privileges", OK, f"holds {held}")


def _bpffs() -> Check:
    if is_mounted(BPFFS):
        return Check("bpffs", OK, f"mounted at {BPFFS}")
    if private_mount_namespace():
        return Check("bpffs", FAIL, f"not mounted at {BPFFS} in this private mount namespace (ip netns exec?)",
                     "use `xdpctl --netns NAME ...` instead of `ip netns exec NAME xdpctl ...`")
    return Check("bpffs", WARN, f"not mounted at {BPFFS}",
                 f"xdpctl mounts it on the first attach; or `mount -t bpf -o mode=0700 bpf {BPFFS}`")


def _bcc() -> Check:
    from ..kernel import compiler

    try:
        compiler._import_bcc()  # its error says what to install
    except XdpctlError as exc:
        return Check("bcc", FAIL, "BCC's Python bindings do not import", str(exc))
    return Check("bcc", OK, "BCC's Python bindings import")


def _headers() -> Check:
    from ..kernel.headers import find_kernel_headers

    release = os.uname().release
    try:
        found = find_kernel_headers(release)
    except XdpctlError as exc:
        return Check("kernel headers", FAIL, f"none for kernel {release}", str(exc))
    status = WARN if found.kind == "fallback" else OK
    hint = "fine for XDP; exact headers would silence the note" if status == WARN else ""
    return Check("kernel headers", status, found.describe(release), hint)


def _kernel(release: str | None = None) -> Check:
    from ..kernel import kernel_version

    release = release or kernel_version.running_release()
    if not kernel_version.supported(release):
        minimum = kernel_version.minimum_text()
        return Check("kernel", FAIL, f"Linux {release} is older than {minimum}, the oldest kernel xdpctl supports",
                     f"boot Linux {minimum} or newer (docs/install.md, \"Kernels\", says why)")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return Check("kernel", OK, f"Linux {release} (no BTF; xdpctl does not need it)")
    return Check("kernel", OK, f"Linux {release}, with BTF")


def _compile_cache() -> Check:
    from ..kernel import compile_cache

    state, what = compile_cache.describe()
    if state == OK:
        return Check("compile cache", OK, what)
    return Check("compile cache", WARN, what,
                 "xdpctl compiles every program instead (2-4 s each); fix the directory or point "
                 f"{compile_cache.ENV_DIR} at another")


def _tools() -> Check:
    have = {t: shutil.which(t) for t in ("bpftool", "xdp-loader", "ip")}
    missing = [t for t, path in have.items() if not path]
    if "ip" in missing:
        return Check("tools", FAIL, "iproute2's ip is missing", "install iproute2")
    if missing:
        return Check("tools", WARN, f"{', '.join(missing)} not installed",
                     "optional: bpftool inspects what xdpctl loaded, xdp-tools is the benchmark's comparison")
    return Check("tools", OK, "ip, bpftool and xdp-loader are installed")


def _state(app) -> list[Check]:
    from ..lifecycle.clean import find

    from ..lifecycle.clean import IN_FLIGHT

    checks = []
    found, notes = find(app)
    busy = "; another xdpctl is changing it now" if any(n.endswith(IN_FLIGHT) for n in notes) else ""
    if found:
        checks.append(Check("state", WARN, f"{len(found)} leftover(s): " + "; ".join(f.what for f in found) + busy,
                            "`xdpctl clean --dry-run` lists them, `xdpctl clean` removes, settles or "
                            "repairs them"))
    else:
        checks.append(Check("state", OK, "xdpctl's state matches the interfaces" + busy))
    other_abi = []
    for att in app.state.attachments(app.netns_ino):
        meta = att.read_meta()
        if meta is not None and meta.abi_version != contract.ABI_VERSION:
            other_abi.append(f"{meta.ifname} (ABI {meta.abi_version})")
    if other_abi:
        checks.append(Check("state ABI", WARN,
                            f"attached by another xdpctl version: {', '.join(other_abi)}; this one is "
                            f"ABI {contract.ABI_VERSION}",
                            "detach them with the xdpctl that attached them, or `xdpctl clean`"))
    return checks


def _orphans(app) -> Check:
    """Programs named like xdpctl's on interfaces whose state is gone (for
    example, pinned on a bpffs that vanished with `ip netns exec`)."""
    from ..lifecycle import recovery
    from ..lifecycle.target import Target, prog_name

    orphans = []
    for link in app.netlink.links():
        if link.xdp is None:
            continue
        att = app.state.attachment(app.netns_ino, link.ifindex)
        target = Target(link, att, att.read_meta() if att.exists() else None)  # looks, never settles
        if target.ours or (target.meta and target.meta.pending_prog_id == target.attached_id):
            continue
        if recovery.damaged(app, link, att, target.meta):
            continue  # its state lost its meta pin: the state check reports it
        if prog_name(target.attached_id).startswith("xdpctl_"):
            orphans.append(f"{link.ifname} (prog {target.attached_id})")
    if not orphans:
        return Check("programs", OK, "every program named xdpctl_* has its state")
    return Check("programs", WARN, f"xdpctl programs with no state: {', '.join(orphans)}",
                 "xdpctl will not touch them: `ip link set dev IFACE xdp off` removes one, "
                 "`xdpctl attach IFACE --force` replaces it with a managed one")


def _steering(app) -> Check:
    """Redirect rules whose targets cannot be sent to now."""
    from ..lifecycle.target import Target
    from ..observe.report import steering_warnings

    found = []
    for att in app.state.attachments(app.netns_ino):
        link = app.netlink.link_by_index(att.ifindex)
        if link is None:
            continue
        target = Target(link, att, att.read_meta())  # looks, never settles
        if target.ours and not target.meta.pending_prog_id:
            found += [f"{target.ifname}: {w['message']}" for w in steering_warnings(app, target)]
    if not found:
        return Check("redirect targets", OK, "every redirect rule's targets can be sent to")
    return Check("redirect targets", WARN, "; ".join(found),
                 "see docs/rules.md#steering-and-load-spreading; `xdpctl rule list IFACE` shows the rules")
def _egress(app) -> Check:
    """--established's TC egress programs: each recorded one on its
    interface, and no filter named like it that xdpctl does not record."""
    from ..lifecycle import egress
    from ..lifecycle.target import Target

    missing, strays = [], []
    for link in app.netlink.links():
        att = app.state.attachment(app.netns_ino, link.ifindex)
        meta = att.read_meta() if att.exists() else None
        record = egress.read_record(att.path) if att.exists() else None
        if meta is not None and egress.missing(app, Target(link, att, meta)):
            missing.append(link.ifname)
        recorded = {record.prog_id, record.pending_prog_id} if record else set()
        for f in app.netlink.tc_filters(link):
            if f.name == contract.EGRESS_PROG_NAME and f.prog_id not in recorded:
                strays.append(f"{link.ifname} (egress prio {f.prio} handle {f.handle}, prog {f.prog_id})")
    if missing:
        return Check("egress programs", WARN, f"--established's egress program is missing on {', '.join(missing)}: "
                     "no new flow is recorded there, so replies to them are not let in",
                     f"`xdpctl attach {missing[0]}` (with its options) puts it back")
    if strays:
        return Check("egress programs", WARN, f"TC filters named {contract.EGRESS_PROG_NAME} with no state: "
                     + ", ".join(strays),
                     "xdpctl will not touch them: `tc filter del dev IFACE egress prio N handle H bpf` removes one")
    return Check("egress programs", OK, "every --established interface has its egress program, and no other")


def _trace_transport() -> Check:
    """How `xdpctl trace` gets frames out of the program: a BPF ring buffer,
    read with libbpf. Every supported kernel (6.1 and newer) has it (5.8
    added it), so there is no perf-buffer fallback; this tries one."""
    import os

    from ..kernel import libbpf

    try:
        fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_RINGBUF, "xdpctl_probe", 0, 0, os.sysconf("SC_PAGE_SIZE"))
    except OSError as exc:
        return Check("trace transport", WARN, f"no BPF ring buffer here ({exc.strerror or exc})",
                     "`xdpctl trace` needs BPF_MAP_TYPE_RINGBUF (Linux 5.8) and libbpf")
    os.close(fd)
    return Check("trace transport", OK, "BPF ring buffer, read with libbpf (xdpctl trace; no perf-buffer "
                                        "fallback: every supported kernel has it)")


def run(app) -> list[Check]:
    caps = privileges.effective()
    checks = [_privileges(caps), _kernel(), _bpffs(), _bcc(), _headers(), _compile_cache(), _tools()]
    if privileges.CAP_BPF in caps or privileges.CAP_SYS_ADMIN in caps:
        checks += _state(app)
        checks.append(_orphans(app))
        checks.append(_steering(app))
        checks.append(_egress(app))
        checks.append(_trace_transport())
    return checks
