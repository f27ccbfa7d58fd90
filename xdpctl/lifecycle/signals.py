"""Holding off Ctrl-C (and SIGTERM, SIGHUP) across the commit of a change.

A change commits in a few steps that must all happen once the first has
(deploy.py: swap the program, flip the rule generation, record, move the
pin). A SIGKILL there is settled by the next xdpctl (recovery.py); a signal
that can be caught is held until the steps are done, then delivered as it
would have been: Ctrl-C becomes KeyboardInterrupt (exit 130) with the change
whole, SIGTERM ends the process with it whole.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Run the block with HELD signals caught and kept; deliver them after.
    Only the main thread can set handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for signum in HELD:
        handler = signal.getsignal(signum)
        if handler is None:  # set outside Python: it could not be put back
            continue
        previous[signum] = signal.signal(signum, lambda n, _frame: caught.append(n))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)
