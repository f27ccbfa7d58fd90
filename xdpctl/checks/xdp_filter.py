"""xdp-filter (from xdp-tools), loaded only to be measured against.

xdp-filter keeps its rules in global pins under /sys/fs/bpf/xdp-filter, so
touching the machine's bpffs could change a user's real filter. It is run
instead in a private mount namespace with a bpffs of its own, on an isolated
throw-away lab: nothing of it lands on the machine's bpffs, and removing the
lab (and closing our fd) removes the program.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass

from ..traffic import lab as labs
from ..kernel import libbpf, netlink
from ..errors import XdpctlError

# The configuration ANCHORS.md measures: all features, one port and one IP rule.
FEATURES = "all"
RULES = (("port", "80"), ("ip", "203.0.113.7"))


def available() -> bool:
    return shutil.which("xdp-filter") is not None


@dataclass
class XdpFilter:
    lab: labs.Lab
    prog_fd: int
    prog_id: int
    version: str

    @classmethod
    def start(cls) -> "XdpFilter":
        if not available():
            raise XdpctlError("xdp-filter is not installed; apt install xdp-tools to compare against it")
        lab = labs.up("xf" + secrets.token_hex(3), isolated=True)
        try:
            enter = f"nsenter --net={netlink.NETNS_RUN_DIR}/{lab.host_netns}"
            steps = [f"{enter} xdp-filter load {lab.host_if} -m native -f {FEATURES}"]
            steps += [f"{enter} xdp-filter {kind} {value}" for kind, value in RULES]
            script = "mount -t bpf bpf /sys/fs/bpf && " + " && ".join(steps)
            proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                  capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                raise XdpctlError(f"xdp-filter failed to load for the comparison: {proc.stderr.strip()[-200:]}")
            with netlink.Netlink(namespace=lab.host_netns) as nl:
                xdp = nl.link(lab.host_if).xdp
            if xdp is None:
                raise XdpctlError("xdp-filter reported success but no XDP program is attached")
            fd = libbpf.prog_fd_by_id(xdp.prog_id)
            version = subprocess.run(["xdp-filter", "--version"], capture_output=True, text=True).stdout.strip()
            return cls(lab, fd, xdp.prog_id, version)
        except BaseException:
            labs.down(lab)
            raise

    def describe(self) -> dict:
        return {"version": self.version, "features": FEATURES,
                "rules": [" ".join(r) for r in RULES], "prog_id": self.prog_id}

    def stop(self) -> None:
        os.close(self.prog_fd)
        labs.down(self.lab)
