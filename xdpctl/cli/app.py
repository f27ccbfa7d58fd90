"""The application object: built once by the root command, handed to every
command. It holds the options every command shares and opens the back ends
(netlink, state) lazily, so a command pays only for what it uses.
"""

from __future__ import annotations

import os
from functools import cached_property

from .. import validate
from ..lifecycle.state import STATE_ROOT, State


class App:
    def __init__(self, netns: str | None = None, verbose: bool = False, state_root: str = STATE_ROOT):
        # None is "the current namespace"; a name that is empty is refused, never taken for it.
        self.netns = None if netns is None else validate.netns(netns)
        self.verbose = verbose
        self.state_root = state_root
        self._entered = False

    def enter_netns(self) -> None:
        """Move into --netns (once, before any socket is opened)."""
        if self.netns is not None and not self._entered:
            from ..kernel.netlink import enter_netns

            enter_netns(self.netns)
            self._entered = True

    @cached_property
    def netlink(self):
        self.enter_netns()
        from ..kernel.netlink import Netlink

        return Netlink()

    @cached_property
    def state(self) -> State:
        return State(self.state_root, namespace=lambda: self.netns_ino)

    @cached_property
    def netns_ino(self) -> int:
        self.enter_netns()
        return os.stat("/proc/thread-self/ns/net").st_ino

    def close(self) -> None:
        if "netlink" in self.__dict__:
            self.netlink.close()
