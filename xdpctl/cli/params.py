"""Click parameter types shared by the commands: each turns a bad value into
a one-line error before anything runs."""

from __future__ import annotations

import os

import click

from .. import validate
from ..errors import BadInput


class InterfaceName(click.ParamType):
    name = "IFACE"

    def convert(self, value, param, ctx):
        try:
            return validate.ifname(value)
        except BadInput as exc:
            self.fail(str(exc), param, ctx)

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        try:
            names = sorted(os.listdir("/sys/class/net"))
        except OSError:
            names = []
        return [CompletionItem(n) for n in names if n.startswith(incomplete)]


IFACE = InterfaceName()

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
