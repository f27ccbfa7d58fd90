"""xdpctl completion bash|zsh|fish"""

from __future__ import annotations

import click

PROG_NAME = "xdpctl"
# What click reads on every Tab; it derives it from the program name that
# xdpctl.cli.main passes, so the two must agree.
COMPLETE_VAR = "_XDPCTL_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def command(ctx, shell):
    """Print the completion script for SHELL, to be sourced by it.

    It completes commands, options, interface names (of the --netns
    namespace when one is given) and, for `rule del`, the interface's rule
    ids. Completing rule ids reads xdpctl's pins, so it needs root;
    otherwise none are offered.

    \b
    bash: eval "$(xdpctl completion bash)"     in ~/.bashrc
    zsh:  eval "$(xdpctl completion zsh)"      in ~/.zshrc
    fish: xdpctl completion fish > ~/.config/fish/completions/xdpctl.fish
    """
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)(ctx.find_root().command, {}, PROG_NAME, COMPLETE_VAR)
    click.echo(complete.source(), nl=False)
