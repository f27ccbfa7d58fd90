"""The shape of an xdpctl.toml text, read before TOML reads it: how deep its
values nest, and how many rules each interface gets.

Python's tomllib reads nested arrays and inline tables by recursion, so a
file nested a few hundred deep ends in a RecursionError; and it builds the
whole document in memory, so a file of a million rules takes a minute and
gigabytes before the rule count can be checked. This scan is one pass of one
regular expression over the text, with strings and comments skipped: it
refuses a value nested deeper than any xdpctl.toml needs, and an interface
given more rules than xdpctl holds, with the file's line, before anything
else is done with the file.

Rules are counted where the file says whose they are, which is how files
are written: `rules = [ ... ]` (or a dotted key ending in `.rules`) under
[interfaces.NAME], and [[interfaces.NAME.rules]] tables. A rule list in an
inline interface table (interfaces = { eth0 = { rules = [...] } }, one line)
is not counted here; config_file checks the count of every interface again
once the file is read.
"""

from __future__ import annotations

import re
import tomllib

from ..datapath import contract
from ..errors import BadInput

# xdpctl.toml nests 4 deep at most (interfaces = { eth0 = { rules = [ { } ] } }).
MAX_NESTING = 16

_STRING = r'"(?:[^"\\\n]++|\\.)*+"|\'[^\'\n]*+\''
_TOKEN = re.compile(
    r'(?P<mlb>"""(?:[^"\\]++|\\.|"(?!""))*+"""(?:"{1,2}(?!"))?)'  # multi-line basic string
    r"|(?P<mll>'''(?:[^']++|'(?!''))*+'''(?:'{1,2}(?!'))?)"  # multi-line literal string
    rf"|(?P<str>{_STRING})"
    r"|(?P<comment>#[^\n]*)"
    # An inline table with no array or table inside: a rule, matched whole, fast.
    rf"|(?P<flat>\{{(?:[^{{}}\[\]\"'#\n]++|{_STRING})*+\}})"
    r"|(?P<open>[\[{])"
    r"|(?P<close>[\]}])",
    re.S,
)
_KEY_PART = rf"[A-Za-z0-9_-]+|{_STRING}"
_KEY_PATH = re.compile(rf"\s*((?:{_KEY_PART})(?:\s*\.\s*(?:{_KEY_PART}))*)\s*")
_PART = re.compile(_KEY_PART)
_HEADER = re.compile(rf"\[(\[)?{_KEY_PATH.pattern}\](\])?")
_ASSIGNED = re.compile(rf"{_KEY_PATH.pattern}=\s*")  # the text before an array: KEY =


def _keys(path: str) -> tuple[str, ...] | None:
    """The keys of a dotted key path (quoted parts decoded); None if it is not one."""
    out = []
    for part in _PART.findall(path):
        if part.startswith('"'):
            try:
                part = tomllib.loads(f"k = {part}")["k"]
            except tomllib.TOMLDecodeError:
                return None
        elif part.startswith("'"):
            part = part[1:-1]
        out.append(part)
    return tuple(out)


def _rules_of(keys: tuple[str, ...] | None) -> str | None:
    """The interface whose rules a key path (interfaces.NAME.rules) names."""
    if keys and len(keys) == 3 and keys[0] == "interfaces" and keys[2] == "rules":
        return keys[1]
    return None


def check(text: str, path: str) -> None:
    """BadInput('FILE:LINE: ...') for a value nested too deep, or for the
    first rule past the most an interface holds."""

    def fail(pos: int, message: str):
        raise BadInput(f"{path}:{text.count(chr(10), 0, pos) + 1}: {message}")

    counts: dict[str, int] = {}

    def count(name: str | None, pos: int) -> None:
        if name is None:
            return
        counts[name] = counts.get(name, 0) + 1
        if counts[name] > contract.MAX_RULES:
            fail(pos, f"more than {contract.MAX_RULES:,} rules for {name}, the most xdpctl holds per interface")

    section: tuple[str, ...] = ()
    depth = 0
    rules_of: str | None = None  # the interface whose rule list is open at depth 1
    pos = 0
    search = _TOKEN.search
    while True:
        m = search(text, pos)
        if m is None:
            return
        kind, start, pos = m.lastgroup, m.start(), m.end()
        if kind == "flat":
            if depth + 1 > MAX_NESTING:
                fail(start, f"values nested more than {MAX_NESTING} deep; an xdpctl.toml nests 4 at most")
            if depth == 1:
                count(rules_of, start)
        elif kind == "open":
            if depth == 0 and text[start] == "[":
                before = text[text.rfind("\n", 0, start) + 1 : start]
                header = _HEADER.match(text, start) if not before.strip() else None
                if header is not None:  # [table] or [[array of tables]]
                    keys = _keys(header.group(2))
                    if header.group(1) and header.group(3):
                        count(_rules_of(keys), start)
                    section = keys or ()
                    pos = header.end()
                    continue
                key = _ASSIGNED.fullmatch(before)
                keys = _keys(key.group(1)) if key else None
                rules_of = _rules_of(section + keys) if keys is not None else None
            elif depth == 1 and text[start] == "{":
                count(rules_of, start)  # a rule with an array or table inside: still one rule
            depth += 1
            if depth > MAX_NESTING:
                fail(start, f"values nested more than {MAX_NESTING} deep; an xdpctl.toml nests 4 at most")
        elif kind == "close":
            depth = max(depth - 1, 0)
            if depth == 0:
                rules_of = None
