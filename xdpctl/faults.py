"""Fault injection for the tests: kill xdpctl at a named point of a change.

Tests set XDPCTL_TEST_KILL_AT to a point's name to prove that a SIGKILL there
leaves the old state or the new one, never a mix (see recovery.py). Unset,
every point is a no-op; nothing else reads this variable.
"""

from __future__ import annotations

import os
import signal

ENV = "XDPCTL_TEST_KILL_AT"
POINTS = ("flip-pinned", "pinned-new", "swapped", "flipped", "recorded")
# Points of a change that also attaches --established's TC egress program
# (lifecycle/egress.py), between pinned-new and swapped.
EGRESS_POINTS = ("egress-recorded", "egress-qdisc", "egress-attached")


def point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
