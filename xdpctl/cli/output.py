"""Printing results: JSON to stdout, or a table through xdpctl/cli/render.py.
Importing rich is left to the human path, so --json stays cheap."""

from __future__ import annotations

import json
import sys


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def note(message: str) -> None:
    """A diagnostic line (warnings, notes) on stderr."""
    sys.stderr.write(message.rstrip("\n") + "\n")
