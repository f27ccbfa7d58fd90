"""What the benchmarks share: whole xdpctl processes timed, their summaries
and table, a throw-away lab, and xdpctl's state root left as the run found it."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import statistics
import subprocess
import sys
import time
from typing import Iterator

from xdpctl.traffic import lab as labs
from xdpctl.lifecycle.state import STATE_ROOT

PY = sys.executable
XDPCTL = [PY, "-m", "xdpctl"]


def run(cmd: list[str], **kw) -> tuple[float, str]:
    """A command's wall-clock time and stdout (kw: subprocess.run's, such as
    input); a failure ends the benchmark."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed: {proc.stderr.strip()[-300:]}")
    return elapsed, proc.stdout


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"median_s": round(statistics.median(ordered), 4),
            "p90_s": round(ordered[math.ceil(0.9 * len(ordered)) - 1], 4),  # nearest rank
            "min_s": round(ordered[0], 4), "max_s": round(ordered[-1], 4), "runs": len(ordered)}


def print_table(results: dict[str, dict], first_column: str) -> None:
    width = max(map(len, [first_column, *results]))
    print(f"{first_column.ljust(width)}  median    p90     min     max   (runs)")
    for name, r in results.items():
        print(f"{name.ljust(width)}  {r['median_s']:.3f}s  {r['p90_s']:.3f}s  {r['min_s']:.3f}s  "
              f"{r['max_s']:.3f}s  ({r['runs']})")


@contextlib.contextmanager
def state_root_as_found() -> Iterator[None]:
    """Remove xdpctl's state root afterwards if this run made it and left it empty."""
    root_existed = os.path.exists(STATE_ROOT)
    try:
        yield
    finally:
        if not root_existed and os.path.isdir(STATE_ROOT) and not os.listdir(STATE_ROOT):
            os.rmdir(STATE_ROOT)


@contextlib.contextmanager
def throwaway_lab(prefix: str) -> Iterator[labs.Lab]:
    """A lab for one run, removed afterwards with its program and state."""
    with state_root_as_found():
        lab = labs.up(prefix + secrets.token_hex(3))
        try:
            yield lab
        finally:
            labs.down(lab)
