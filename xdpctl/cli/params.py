"""Click parameter types shared by the commands: each turns a bad value into
a one-line error before anything runs, and offers the shell its candidates
(xdpctl/cli/completion_sources.py reads them cheaply)."""

from __future__ import annotations

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

        from .completion_sources import interface_names

        names = interface_names(_netns(ctx))
        return [CompletionItem(n) for n in names if n.startswith(incomplete)]


IFACE = InterfaceName()


class NetnsName(click.ParamType):
    name = "NAME"

    def convert(self, value, param, ctx):
        if ctx is not None and ctx.resilient_parsing:
            return value  # completing: a name that names nothing offers nothing (not the host's names)
        try:
            return validate.netns(value)
        except BadInput as exc:
            self.fail(str(exc), param, ctx)


NETNS = NetnsName()

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _netns(ctx: click.Context) -> str | None:
    """The namespace of the command line being completed: the command's own
    --netns (gen has one), else xdpctl's."""
    own = ctx.params.get("netns")
    return own if own is not None else ctx.find_root().params.get("netns")


def complete_rule_ids(ctx, param, incomplete):
    """Rule ids of the IFACE given before, described (zsh and fish show it)."""
    from click.shell_completion import CompletionItem

    from .completion_sources import recorded_rules
    from .rule import describe

    ifname = ctx.params.get("iface")
    if not ifname:
        return []
    return [CompletionItem(str(r.id), help=describe(r.describe()))
            for r in recorded_rules(ifname, _netns(ctx)) if str(r.id).startswith(incomplete)]
