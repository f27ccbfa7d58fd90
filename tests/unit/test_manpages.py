"""The man pages under docs/man/man1 are what scripts/manpages.py writes from the
click definitions now, every command and subcommand has one, and man renders
them without a warning."""

from __future__ import annotations

import os
import shutil
import subprocess

import click
import pytest
from package_build import REPO

from xdpctl.cli import COMMANDS, cli, manpages

MAN_DIR = REPO / "docs" / "man" / "man1"
REGENERATE = "run `.venv/bin/python scripts/manpages.py` and commit docs/man/man1"


def command_paths() -> list[str]:
    """Every visible command, found from COMMANDS and the groups' own commands
    (not through the generator's walk)."""
    out = ["xdpctl"]
    ctx = click.Context(cli, info_name="xdpctl")
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        if command.hidden:
            continue
        out.append(f"xdpctl-{name}")
        for sub_name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                out.append(f"xdpctl-{name}-{sub_name}")
    return sorted(out)


def test_checked_in_pages_are_current(tmp_path):
    written = manpages.write(tmp_path)
    checked_in = sorted(p.name for p in MAN_DIR.glob("*.1"))
    assert checked_in == written, REGENERATE
    stale = [name for name in written if (tmp_path / name).read_text() != (MAN_DIR / name).read_text()]
    assert stale == [], f"{', '.join(stale)} differ: {REGENERATE}"


def test_every_command_and_subcommand_has_a_page():
    pages = {name.removesuffix(".1") for name in manpages.generate()}
    assert pages == set(command_paths())
    assert {"xdpctl", "xdpctl-attach", "xdpctl-rule-add", "xdpctl-rule-del", "xdpctl-rule-list",
            "xdpctl-lab-up", "xdpctl-lab-list", "xdpctl-lab-down", "xdpctl-completion"} <= pages


def test_pages_say_what_help_says():
    pages = manpages.generate()
    attach = pages["xdpctl-attach.1"]
    assert attach.startswith('.TH "XDPCTL-ATTACH" "1" ""')
    assert "\\fB\\-\\-drop\\-non\\-ip\\fR\nDrop every frame that is not IPv4 or IPv6 (ARP too)." in attach
    assert "\\-\\-ebpf" not in attach  # hidden
    root = pages["xdpctl.1"]
    assert "\\fB\\-\\-netns NAME\\fR" in root
    assert "See \\fBxdpctl\\-rule\\fR(1)." in root
    assert "\b" not in "".join(pages.values())  # click's \b markers became .nf blocks
    assert ".nf\nxdpctl attach eth0 \\-\\-drop\\-non\\-ip" in root


def test_escape_keeps_roff_from_reading_text_as_requests():
    assert manpages.escape(".hidden\n'quote\na\\b -x") == "\\&.hidden\n\\&'quote\na\\eb \\-x"


@pytest.mark.skipif(shutil.which("man") is None, reason="needs man (man-db)")
@pytest.mark.parametrize("page", sorted(p.name for p in MAN_DIR.glob("*.1")))
def test_man_renders_the_page_without_warnings(page):
    r = subprocess.run(["man", "--warnings", "-l", str(MAN_DIR / page)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    title = page.removesuffix(".1")
    assert r.stdout.splitlines()[0].startswith(f"{title.upper()}(1)")
    assert all(f"\n{section}\n" in r.stdout for section in ("NAME", "SYNOPSIS", "OPTIONS")), r.stdout
