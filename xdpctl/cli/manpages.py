"""Man pages for xdpctl and every subcommand, written from the click
definitions themselves, so that they say what --help says.

    python -m xdpctl.cli.manpages OUTDIR     (scripts/manpages.py: docs/man)

One page per command, named by its path: xdpctl(1), xdpctl-attach(1),
xdpctl-rule-add(1). click-man would do the same, but it finds subcommands
through Group.commands, which xdpctl's lazily loading root group leaves
empty, and it writes click's \\b markers and backslashes into the roff
unescaped. The pages carry no date, so regenerating them changes nothing
unless a command did.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import click

from .. import __version__

SECTION = "1"


@dataclass
class Page:
    ctx: click.Context
    subcommands: list[tuple[str, click.Command]]

    @property
    def name(self) -> str:
        return self.ctx.command_path.replace(" ", "-")

    @property
    def filename(self) -> str:
        return f"{self.name}.{SECTION}"


def pages(root: click.Command, name: str = "xdpctl") -> Iterator[Page]:
    """Every visible command under root (root first, then depth first, by name)."""

    def walk(command: click.Command, info_name: str, parent: click.Context | None) -> Iterator[Page]:
        ctx = click.Context(command, info_name=info_name, parent=parent, **command.context_settings)
        subs = []
        if isinstance(command, click.Group):
            for sub_name in command.list_commands(ctx):
                sub = command.get_command(ctx, sub_name)
                if sub is not None and not sub.hidden:
                    subs.append((sub_name, sub))
        yield Page(ctx, subs)
        for sub_name, sub in subs:
            yield from walk(sub, sub_name, ctx)

    return walk(root, name, None)


# --- roff ------------------------------------------------------------------


def escape(text: str) -> str:
    """Text as roff prints it literally: backslashes, minus signs (so options
    copy and paste as typed), and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def paragraphs(help_text: str) -> list[str]:
    """click's help as roff paragraphs: a paragraph that starts with click's
    \\b marker keeps its lines (.nf), others are filled; \\f ends the help."""
    text = inspect.cleandoc(help_text.split("\f")[0])
    out = []
    for para in text.split("\n\n"):
        lines = para.split("\n")
        if lines[0].strip() == "\b":
            out.append(".PP\n.nf\n" + escape("\n".join(lines[1:])) + "\n.fi")
        elif para.strip():
            out.append(".PP\n" + escape(" ".join(line.strip() for line in lines)))
    return out


def short_help(command: click.Command) -> str:
    """The NAME line: short_help, or the help's first sentence, whole (where
    --help cuts it to fit a column)."""
    if command.short_help:
        return command.short_help.rstrip(".")
    first = inspect.cleandoc((command.help or "").split("\f")[0]).split("\n\n")[0]
    first = " ".join(first.split())
    end = first.find(". ")
    return (first[:end] if end >= 0 else first).rstrip(".")


def render(page: Page) -> str:
    ctx, command = page.ctx, page.ctx.command
    path = ctx.command_path
    lines = [
        f'.TH "{page.name.upper()}" "{SECTION}" "" "xdpctl {__version__}" "xdpctl Manual"',
        ".SH NAME",
        f"{escape(page.name)} \\- {escape(short_help(command))}",
        ".SH SYNOPSIS",
        f".B {escape(path)}",
        escape(" ".join(command.collect_usage_pieces(ctx))),
    ]
    if command.help:
        lines += [".SH DESCRIPTION", *paragraphs(command.help)]
    params = command.get_params(ctx)
    arguments = [(p.make_metavar(ctx), p.help) for p in params
                 if isinstance(p, click.Argument) and getattr(p, "help", None)]  # click 8.5+
    if arguments:
        lines.append(".SH ARGUMENTS")
        for metavar, text in arguments:
            lines += [".TP", f"\\fI{escape(metavar)}\\fR", escape(text)]
    records = [p.get_help_record(ctx) for p in params if isinstance(p, click.Option)]
    records = [r for r in records if r]  # hidden options have none
    if records:
        lines.append(".SH OPTIONS")
        for names, text in records:
            lines += [".TP", f"\\fB{escape(names)}\\fR", escape(text or "")]
    if ctx.parent is not None:
        root = ctx.find_root().info_name
        lines += [".PP", escape(f"Options of {root} itself (--netns, --verbose) go before the command; "
                                f"see {root}({SECTION}).")]
    if page.subcommands:
        lines.append(".SH COMMANDS")
        for name, sub in page.subcommands:
            lines += [".TP", f"\\fB{escape(name)}\\fR", escape(short_help(sub)) + ".",
                      f"See \\fB{escape(page.name)}\\-{escape(name)}\\fR({SECTION})."]
    see = [p.command_path.replace(" ", "-") for p in _ancestors(ctx)]
    see += [f"{page.name}-{name}" for name, _ in page.subcommands]
    if see:
        lines += [".SH SEE ALSO", ", ".join(f"\\fB{escape(s)}\\fR({SECTION})" for s in see)]
    return "\n".join(lines) + "\n"


def _ancestors(ctx: click.Context) -> list[click.Context]:
    out = []
    while ctx.parent is not None:
        ctx = ctx.parent
        out.insert(0, ctx)
    return out


# --- files -----------------------------------------------------------------


def generate(root: click.Command | None = None) -> dict[str, str]:
    """filename -> page text, for every command."""
    if root is None:
        from . import cli as root
    return {page.filename: render(page) for page in pages(root)}


def write(outdir: str | Path, root: click.Command | None = None) -> list[str]:
    """Write every page into outdir and remove pages of commands that are gone.
    Returns the file names written."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    generated = generate(root)
    for stale in outdir.glob(f"*.{SECTION}"):
        if stale.name not in generated:
            stale.unlink()
    for filename, text in generated.items():
        (outdir / filename).write_text(text)
    return sorted(generated)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        sys.exit("usage: python -m xdpctl.cli.manpages OUTDIR")
    for filename in write(args[0]):
        print(Path(args[0]) / filename)


if __name__ == "__main__":
    main()
