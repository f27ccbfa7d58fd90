#!/usr/bin/env python3
"""Regenerate the man pages from the click definitions.

    .venv/bin/python scripts/manpages.py [OUTDIR]     (default: docs/man/man1)

tests/unit/test_manpages.py fails when docs/man/man1 differs from what this writes,
so run it after changing a command, an option or a help text, and commit the
pages with the change.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the checkout's xdpctl, installed or not

from xdpctl.cli.manpages import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:] or [str(REPO / "docs" / "man" / "man1")])
