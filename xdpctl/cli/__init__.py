"""The xdpctl command line: the root group, and the one place where errors
become messages and exit codes.

Commands stay thin (parse, call, render). Every failure prints one line to
stderr, `xdpctl: error: ...`, and exits non-zero: 2 for bad input, 1 for a
refusal or failure, 130 on Ctrl-C, 70 for a bug (whose traceback shows only
with --verbose). Data goes to stdout, diagnostics to stderr.

The package is the top layer: one thin module per command, the application
object they receive (app), rendering with rich (render, the only module that
imports it), and what a Tab offers (completion_sources). It may use every
layer below; nothing below imports it.
"""

from __future__ import annotations

import signal
import sys
import threading
import traceback

EXIT_BUG = 70
EXIT_INTERRUPTED = 130


def _interrupted_while_loading(signum, frame):
    sys.stderr.write("xdpctl: interrupted\n")
    sys.exit(EXIT_INTERRUPTED)


# A Ctrl-C while the command line loads (click, the app) exits 130 quietly,
# as it does once a command runs, instead of a KeyboardInterrupt traceback.
_loading = threading.current_thread() is threading.main_thread()
_previous = signal.signal(signal.SIGINT, _interrupted_while_loading) if _loading else None
try:
    import click

    from .. import __version__
    from .app import App
    from .params import NETNS
    from ..errors import MissingCapability, XdpctlError
finally:
    if _loading:
        signal.signal(signal.SIGINT, _previous)

# name -> module under xdpctl.cli; each module defines a click command `command`.
COMMANDS = {
    "attach": "attach",
    "detach": "detach",
    "status": "status",
    "stats": "stats",
    "lab": "lab",
    "gen": "gen",
    "bench": "bench",
    "rule": "rule",
    "apply": "apply",
    "export": "export",
    "flows": "flows",
    "ban": "ban",
    "trace": "trace",
    "exporter": "exporter",
    "service": "service",
    "clean": "clean",
    "doctor": "doctor",
    "selftest": "selftest",
    "completion": "completion",
}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _usage_line(exc: click.UsageError) -> str:
    hint = f"; see `{exc.ctx.command_path} --help`" if exc.ctx else ""
    return _one_line(exc.format_message()).rstrip(".") + hint


def _why_missing(exc: XdpctlError) -> str:
    """For a missing capability inside a user namespace, why root is not enough."""
    if not isinstance(exc, MissingCapability):
        return ""
    from ..kernel import privileges

    return f"; {privileges.USER_NAMESPACE_NOTE}" if privileges.in_user_namespace() else ""


def _fail(ctx: click.Context, message: str, code: int) -> None:
    click.echo(f"xdpctl: error: {_one_line(message)}", err=True)
    ctx.exit(code)


class XdpctlGroup(click.Group):
    """Loads commands on demand and translates every error in one place."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        module = COMMANDS.get(name)
        if module is None:
            return None
        mod = __import__(f"{__name__}.{module}", fromlist=["command"])
        return mod.command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except XdpctlError as exc:
            app = ctx.obj
            detail = getattr(exc, "detail", "")
            if detail and app is not None and app.verbose:
                click.echo(detail.rstrip(), err=True)
            _fail(ctx, str(exc) + _why_missing(exc), exc.exit_code)
        except click.UsageError as exc:
            _fail(ctx, _usage_line(exc), exc.exit_code)
        except (click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("xdpctl: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            ctx.exit(1)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if ctx.obj is not None and ctx.obj.verbose:
                traceback.print_exc()
            _fail(ctx, f"internal error: {type(exc).__name__}: {exc} "
                       "(a bug in xdpctl; run with --verbose for the traceback)", EXIT_BUG)
        finally:
            if ctx.obj is not None:
                ctx.obj.close()


@click.group(cls=XdpctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--netns", type=NETNS, metavar="NAME", help="Act inside the network namespace NAME (`ip netns`).")
@click.option("-v", "--verbose", is_flag=True, help="Show compiler and verifier output, and tracebacks.")
@click.version_option(__version__, "--version", prog_name="xdpctl")
@click.pass_context
def cli(ctx: click.Context, netns: str | None, verbose: bool) -> None:
    """Manage eBPF/XDP packet filters: attach, count, detach.

    \b
    xdpctl attach eth0 --drop-non-ip   compile bpf/ with BCC and attach it
    xdpctl stats                       per-protocol pass/drop counters
    xdpctl status                      which interfaces carry XDP programs
    xdpctl detach eth0                 remove xdpctl's program
    xdpctl rule add eth0 drop --src 203.0.113.0/24 --proto udp --dport 53
    """
    if ctx.obj is None:  # tests inject their own App
        ctx.obj = App(netns=netns, verbose=verbose)


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors too become one line, not click's three."""
    try:
        # Without standalone mode, click returns ctx.exit()'s code instead of exiting.
        code = cli.main(args=argv, prog_name="xdpctl", standalone_mode=False)
    except click.UsageError as exc:
        click.echo(f"xdpctl: error: {_usage_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"xdpctl: error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("xdpctl: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)
