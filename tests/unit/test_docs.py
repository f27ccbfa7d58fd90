"""The documentation matches the command line: every command has a page under
docs/commands/, every subcommand is named on its group's page, every command
example in docs/*.md, docs/commands/*.md and README.md parses, and every
relative link (and its #anchor) leads somewhere.

An example is a line of a fenced code block that starts with `xdpctl ` or
`$ xdpctl `. In a block where some lines start with `$ `, only those are
commands and the rest is their output; when that output is an
`xdpctl: error: ...` line of bad usage, the example must fail with exactly
that line. A `#` starts a comment, and a shell operator (|, &&, ;, >) ends
the command. Synopses are written `Usage: xdpctl ...` (as `--help` writes
them), so they are not examples; their commands and options are checked on
their own.

No root, no kernel: the examples are parsed by click, never run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import click
import pytest
from click.testing import CliRunner

from xdpctl.cli import _usage_line, cli  # _usage_line: how xdpctl words a usage error

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
COMMAND_PAGES = DOCS / "commands"


def markdown_files() -> list[Path]:
    return sorted([*DOCS.glob("*.md"), *COMMAND_PAGES.glob("*.md"), REPO / "README.md"])


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


# --- the command tree ------------------------------------------------------------


def root_context() -> click.Context:
    return click.Context(cli, info_name="xdpctl")


def commands() -> dict[str, click.Command]:
    """Every visible command, as the root group lists it (COMMANDS)."""
    ctx = root_context()
    out = {}
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        if command is not None and not command.hidden:
            out[name] = command
    return out


def subcommands(group: click.Group) -> list[str]:
    ctx = click.Context(group)
    return [n for n in group.list_commands(ctx) if not group.get_command(ctx, n).hidden]


# --- examples ----------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    path: Path
    line: int
    text: str
    error: str = ""  # the first output line, when the docs show the command failing

    def __str__(self) -> str:
        return f"{rel(self.path)}:{self.line}: {self.text}"


FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<"}


def code_blocks(path: Path) -> list[list[tuple[int, str]]]:
    """The lines (numbered from 1) of each fenced code block of a file."""
    blocks, current, fence = [], None, None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        m = FENCE.match(line)
        if current is None:
            if m:
                current, fence = [], m.group(1)
        elif m and m.group(1) == fence and not line.strip()[len(fence):].strip():
            blocks.append(current)
            current = None
        else:
            current.append((number, line))
    return blocks


def examples(path: Path) -> list[Example]:
    out = []
    for block in code_blocks(path):
        prompted = any(line.lstrip().startswith("$ ") for _, line in block)
        for i, (number, line) in enumerate(block):
            text = line.strip()
            if prompted:
                if not text.startswith("$ "):
                    continue  # output
                text = text[2:].strip()
            if text.startswith("xdpctl "):
                after = block[i + 1][1].strip() if prompted and i + 1 < len(block) else ""
                error = after if after.startswith("xdpctl: error: ") else ""
                out.append(Example(path, number, text, error))
    return out


def all_examples() -> list[Example]:
    return [e for path in markdown_files() for e in examples(path)]


def words(text: str) -> list[str]:
    """The arguments of an example, after `xdpctl`, up to a shell operator."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars="|&;<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out = []
    for token in lexer:
        if token in SHELL_OPERATORS or (token and set(token) <= set("|&;<>")):
            break
        out.append(token)
    assert out and out[0] == "xdpctl", text
    return out[1:]


def _path_as_given(self, value, param, ctx):
    return value


def parse(args: list[str]) -> list[str]:
    """Parse args as xdpctl would, down to the command that runs, without
    running anything: each command's own parser sees its own arguments, so an
    unknown command or option, a missing argument or a bad value raises a
    click.UsageError (callbacks are never invoked). Returns the command path.
    File arguments are taken as written: whether a path in the docs exists on
    this machine, or is readable by this user, is no matter of the docs."""
    with mock.patch.object(click.Path, "convert", _path_as_given):
        return _parse(args)


def _parse(args: list[str]) -> list[str]:
    try:
        ctx = cli.make_context("xdpctl", list(args), resilient_parsing=False)
    except click.exceptions.Exit:  # --help or --version: printed, and fine
        return ["xdpctl"]
    command, path = cli, ["xdpctl"]
    while isinstance(command, click.Group):
        rest = [*(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])), *ctx.args]
        if not rest:
            if command.invoke_without_command:
                break
            raise click.UsageError(f"`{' '.join(path)}` needs a COMMAND", ctx)
        name, command, rest = command.resolve_command(ctx, rest)
        path.append(name)
        try:
            ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=False)
        except click.exceptions.Exit:  # --help
            break
    return path


def test_docs_have_examples():
    found = all_examples()
    assert len(found) > 50, "the example finder found almost nothing: is it broken?"
    shown = set()
    for e in found:
        try:
            shown.add(parse(words(e.text))[1])
        except (click.UsageError, IndexError):
            pass  # test_every_example_parses reports it
    assert not set(commands()) - shown, f"commands with no example in the docs: {sorted(set(commands()) - shown)}"


@pytest.mark.parametrize("example", all_examples(), ids=str)
def test_every_example_parses(example):
    """An example parses, and `--help` on it works; or, where the docs show
    it failing on bad usage, it fails with the message the docs show."""
    args = words(example.text)
    try:
        parse(args)
    except click.UsageError as exc:
        message = f"xdpctl: error: {_usage_line(exc)}"
        if example.error:
            assert example.error == message, f"{example}\n  the docs show {example.error!r}\n  xdpctl says {message!r}"
            return
        pytest.fail(f"{example}\n  does not parse: {exc.format_message()}")
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, f"{example}\n  `--help` on it exits {result.exit_code}: {result.output}"


@pytest.mark.parametrize("text, why", [
    ("xdpctl attach eth0 --no-such-option", "No such option"),
    ("xdpctl frobnicate eth0", "No such command"),
    ("xdpctl rule frobnicate eth0", "No such command"),
    ("xdpctl rule add eth0", "Missing argument"),
    ("xdpctl attach eth0 --mode turbo", "turbo"),
    ("xdpctl lab", "COMMAND"),
])
def test_a_broken_example_is_caught(text, why):
    with pytest.raises(click.UsageError) as err:
        parse(words(text))
    assert why in err.value.format_message()


def test_a_broken_example_in_a_doc_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```\n$ xdpctl attach eth0 --no-such-option   # a comment\nxdpctl attach eth0\n```\n"
                    "```sh\nxdpctl stats --json | jq .  # piped\n```\n")
    found = examples(page)
    assert [e.text for e in found] == ["xdpctl attach eth0 --no-such-option   # a comment",
                                       "xdpctl stats --json | jq .  # piped"]
    assert words(found[0].text) == ["attach", "eth0", "--no-such-option"]
    assert words(found[1].text) == ["stats", "--json"]
    assert found[0].error == ""
    with pytest.raises(click.UsageError):
        parse(words(found[0].text))


def test_an_example_shown_failing_must_fail_as_shown(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```\n$ xdpctl attach eth0 --mode turbo\nxdpctl: error: something else\n```\n")
    (example,) = examples(page)
    assert example.error == "xdpctl: error: something else"
    with pytest.raises(AssertionError, match="the docs show"):
        test_every_example_parses(example)


# --- synopses ----------------------------------------------------------------------


def synopses(path: Path) -> list[tuple[int, str]]:
    """`Usage: xdpctl ...` lines of code blocks, joined with their indented
    continuation lines."""
    out = []
    for block in code_blocks(path):
        joining = False
        for number, line in block:
            if line.startswith("Usage: xdpctl"):
                out.append((number, line[len("Usage: "):]))
                joining = True
            elif joining and line[:1].isspace() and line.strip():
                out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
            else:
                joining = False
    return out


def option_names(command: click.Command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}


@pytest.mark.parametrize("path", markdown_files(), ids=rel)
def test_synopses_name_real_commands_and_options(path):
    for number, text in synopses(path):
        command, known = cli, option_names(cli) | {"-h", "--help"}
        for word in text.split()[1:]:
            if isinstance(command, click.Group) and re.fullmatch(r"[a-z][a-z-]*", word):
                sub = command.get_command(root_context(), word)
                if sub is None:
                    pytest.fail(f"{rel(path)}:{number}: no command {word!r} in {text!r}")
                command, known = sub, known | option_names(sub)
        for option in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", text):
            assert option in known, f"{rel(path)}:{number}: {option} is not an option of {text!r}"


# --- pages -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_command_has_a_page(name):
    page = COMMAND_PAGES / f"{name}.md"
    assert page.is_file(), f"`xdpctl {name}` has no page: write {rel(page)} and link it from docs/commands.md"
    assert f"(commands/{name}.md)" in (DOCS / "commands.md").read_text(), \
        f"docs/commands.md does not link {rel(page)}"


@pytest.mark.parametrize("name", sorted(n for n, c in commands().items() if isinstance(c, click.Group)))
def test_every_subcommand_is_on_its_groups_page(name):
    page = COMMAND_PAGES / f"{name}.md"
    text = page.read_text() if page.is_file() else ""
    for sub in subcommands(commands()[name]):
        assert f"{name} {sub}" in text, f"{rel(page)} never mentions `xdpctl {name} {sub}`"


def test_no_page_for_a_command_that_does_not_exist():
    pages = {p.stem for p in COMMAND_PAGES.glob("*.md")}
    assert pages <= set(commands()), f"pages for no command: {sorted(pages - set(commands()))}"


# --- links -------------------------------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def links(path: Path) -> list[tuple[int, str]]:
    out, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out += [(number, m.group(1)) for m in LINK.finditer(re.sub(r"`[^`]*`", "", line))]
    return out


def anchors(path: Path) -> set[str]:
    """The anchors GitHub makes for a page's headings: lower case, punctuation
    dropped, spaces to hyphens, -1, -2 ... for repeats."""
    seen: dict[str, int] = {}
    out, fenced = set(), False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("path", markdown_files(), ids=rel)
def test_relative_links_resolve(path):
    for number, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # a URL
        file, _, anchor = target.partition("#")
        dest = path.parent / file if file else path
        assert dest.exists(), f"{rel(path)}:{number}: {target} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{rel(path)}:{number}: {rel(dest)} has no heading #{anchor}"


def test_anchors_are_github_s(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n## xdpctl doctor, message by message\n### bpffs under `ip netns exec`\n"
                    "```\n# not a heading\n```\n### Errors\n### Errors\n")
    assert anchors(page) == {"title", "xdpctl-doctor-message-by-message", "bpffs-under-ip-netns-exec",
                             "errors", "errors-1"}
