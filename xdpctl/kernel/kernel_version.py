"""The oldest kernel xdpctl supports, and telling the running one apart.

xdpctl needs Linux 6.1 or newer. What the code uses sets a hard floor of
5.8 (docs/install.md, "Kernels", lists each feature and the release that
brought it): CAP_BPF and CAP_PERFMON (5.8), the replace-with-expected-fd
flag of the no-gap swap (IFLA_XDP_EXPECTED_FD, 5.7), map batch operations
(5.6), mmapable arrays for the rule tables (5.5), bounded loops (5.3) and the
1M-instruction verifier limit (5.2). Above that floor, whether the program
passes depends on how precisely the verifier tracks bounds, which changed
from release to release; 6.1 is the oldest release it is tested on (with
6.12 and 6.18), so it is the minimum. On an older kernel every command that
loads a program stops with one line naming the kernel and the minimum
(errors.UnsupportedKernel), not a verifier log.

Release strings come in many forms ("6.1.0-57-amd64", "6.18.44-fc-v657",
"5.15.0-91-generic", "6.8.0-rc1", "4.19.0+"); only the leading
major.minor[.patch] matters. Every function takes the release as an argument,
so the check can be tested with any string.
"""

from __future__ import annotations

import os
import re

from ..errors import UnsupportedKernel

MINIMUM = (6, 1)

_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def running_release() -> str:
    return os.uname().release


def parse(release: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a release string; None when it does not start
    with a version (then nothing is refused: the kernel will tell)."""
    m = _RELEASE.match(release.strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def minimum_text() -> str:
    return ".".join(map(str, MINIMUM))


def supported(release: str) -> bool:
    version = parse(release)
    return version is None or version[:2] >= MINIMUM


def require_supported(release: str | None = None) -> None:
    """UnsupportedKernel when the running kernel (or release) is too old."""
    release = running_release() if release is None else release
    if not supported(release):
        raise UnsupportedKernel(release, minimum_text())
