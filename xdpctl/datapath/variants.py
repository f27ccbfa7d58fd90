"""Every variant of the XDP program xdpctl can build, as one list the tests
walk (tests/kernel/test_variants.py loads each; tests/unit/test_variants.py
checks that the list covers the contract).

The list is generated from the contract, so a new option or kind of match
adds variants by itself:

- the options (contract.OPT_*): none, each alone, all together; no rules;
- each kind of match (contract.KINDS) alone, at the smallest tables: the
  prefix kinds in IPv4 and IPv6 (and both), as plain rules (a block list,
  no general search) and as general ones; MACs through their tries;
- all kinds together, every trie, at the smallest tables; with the general
  search over one summary word (1,000 rules, as `xdpctl bench --rules
  1000` builds), over two, and at the largest sizes the limits allow
  (contract.MAX_GENERAL general rules: four summary words; contract.MAX_RULES
  decisions and hit slots; IPv6 tries down to /128), with every option;
- the largest block list: contract.MAX_RULES plain prefixes of both kinds;
- each action beyond pass and drop (contract.ACTS) alone, with the smallest
  rule engine (one protocol match), all of them together, and all of them
  with every option and every kind at the largest sizes: every stateless
  kind at contract.MAX_GENERAL, and with --established too at the fewer
  general rules a program with both it and redirect --to holds
  (layout.MAX_GENERAL_ESTABLISHED_REDIRECT);
- the capture path of `xdpctl trace` (trace_cap: the record's bytes, the
  largest), compiled in without rules and every option, and with every kind,
  option and action at 1,000 rules.

Class-record capacities and trie blocks only set the masks of the same
code, so the largest variants keep them at a size whose tables fit in memory
(TABLE_BUDGET per generation); what the verifier walks (summary words,
kinds, trie depths, decisions) is at the limits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import contract
from .layout import (ACTION_SWITCHES, KIND_BIT, KIND_NAMES, MAX_GENERAL_ESTABLISHED_REDIRECT, TRIE_BIT, TRIE_NAMES,
                     Layout, Needs, depth_for, tier)
from .program import FilterOptions, describe_variant

TABLE_BUDGET = 40 << 20  # bytes of one generation's tables in the largest variants

# The tries a prefix kind uses, by family ("" for MACs).
KIND_TRIES: dict[str, tuple[tuple[str, str], ...]] = {
    "SRC": (("ipv4", "SRC4"), ("ipv6", "SRC6")),
    "DST": (("ipv4", "DST4"), ("ipv6", "DST6")),
    "SRC_MAC": (("", "SMAC"),),
    "DST_MAC": (("", "DMAC"),),
}
PREFIX_KINDS = ("SRC", "DST")  # the kinds a plain rule (a lone prefix) has
KEY_BITS = {"SRC4": 32, "DST4": 32, "SRC6": 128, "DST6": 128, "SMAC": 48, "DMAC": 48}
OPTION_NAMES = {contract.OPT_DROP_NON_IP: "drop-non-ip", contract.OPT_POLICY_DENY: "deny"}


def option_bits() -> list[int]:
    """Every option bit of the contract (its OPT_* constants)."""
    return sorted(value for name, value in vars(contract).items() if name.startswith("OPT_"))


@dataclass(frozen=True)
class Variant:
    name: str  # short and unique: the test's id
    options: FilterOptions
    layout: Layout
    option_bits: int = 0  # the bits asked for (options.bits must equal them)
    trace_cap: int = 0  # xdpctl trace's capture path, with records of this many bytes (0: none)

    def describe(self) -> str:
        traced = f", traced ({self.trace_cap}-byte records)" if self.trace_cap else ""
        return describe_variant(self.options, self.layout) + traced


def _layout(kinds: int, tries: int, general: int, rules: int, depths: dict[str, int] | None = None) -> Layout:
    """The layout a rule set of this shape grows to from none, at the
    smallest capacities (one class per kind, one block per trie)."""
    if not kinds:
        return Layout()
    caps = {name: 1 for name in KIND_NAMES if kinds & KIND_BIT[name]}
    nodes = {name: 1 for name in TRIE_NAMES if tries & TRIE_BIT[name]}
    return Layout().grown(Needs(kinds=kinds, tries=tries, general=general, decisions=rules, slots=rules,
                                caps=caps, nodes=nodes, depths=depths or {}))


def _within_budget(layout: Layout) -> Layout:
    """layout with the largest power-of-two capacities and trie blocks whose
    tables fit TABLE_BUDGET (all alike: they only size masks)."""
    best = layout
    size = tier(64)
    while True:
        caps = tuple(size if c else 0 for c in layout.caps)
        nodes = tuple(size if n else 0 for n in layout.nodes)
        bigger = replace(layout, caps=caps, nodes=nodes)
        if bigger.tables_size > TABLE_BUDGET:
            return best
        best, size = bigger, size * 2


def _all_tries() -> int:
    return sum(TRIE_BIT.values())


def _full_depths() -> dict[str, int]:
    return {name: depth_for(KEY_BITS[name]) for name in TRIE_NAMES}


def _option_sets() -> list[int]:
    bits = option_bits()
    every = sum(bits)
    out: list[int] = []
    for b in [0, *bits, every]:
        if b not in out:
            out.append(b)
    return out


def _options_name(bits: int) -> str:
    names = [OPTION_NAMES.get(b, f"opt{b}") for b in option_bits() if bits & b]
    return "+".join(names) or "count-only"


def variants() -> list[Variant]:
    every_option = sum(option_bits())
    every_kind = sum(KIND_BIT.values())
    out: list[Variant] = []

    def add(name: str, layout: Layout, bits: int = 0) -> None:
        out.append(Variant(name, FilterOptions.from_bits(bits), layout, bits))

    for bits in _option_sets():
        add(f"options-{_options_name(bits)}", Layout(), bits)

    for kind in KIND_NAMES:
        bit = KIND_BIT[kind]
        tries = KIND_TRIES.get(kind, ())
        if kind in PREFIX_KINDS:
            for family, trie in tries:
                add(f"{kind.lower()}-{family}-plain", _layout(bit, TRIE_BIT[trie], 0, 1))
            both = sum(TRIE_BIT[t] for _, t in tries)
            add(f"{kind.lower()}-ipv4+ipv6-general", _layout(bit, both, 1, 1))
        else:
            add(f"{kind.lower()}", _layout(bit, sum(TRIE_BIT[t] for _, t in tries), 1, 1))

    add("all-kinds-smallest", _layout(every_kind, _all_tries(), 1, 1))
    add("all-kinds-1000-rules", _layout(every_kind, _all_tries(), 1000, 1000))
    two_words = 64 * 64 + 1  # general rules that need a second summary word
    add("all-kinds-2-summary-words", _layout(every_kind, _all_tries(), two_words, two_words))
    largest = _layout(every_kind, _all_tries(), contract.MAX_GENERAL, contract.MAX_RULES, _full_depths())
    add("all-kinds-largest", _within_budget(largest), every_option)
    prefix_bits = sum(KIND_BIT[k] for k in PREFIX_KINDS)
    prefix_tries = sum(TRIE_BIT[t] for k in PREFIX_KINDS for _, t in KIND_TRIES[k])
    block = _layout(prefix_bits, prefix_tries, 0, contract.MAX_RULES, _full_depths())
    add("blocklist-largest", _within_budget(block))

    every_action = sum(bit for _, bit in contract.ACTS)
    small = _layout(KIND_BIT["PROTO"], 0, 1, 1)
    for bit, _, name in ACTION_SWITCHES:
        add(f"action-{name}", replace(small, actions=bit))
    add("actions-all", replace(small, actions=every_action))
    but_established = every_kind & ~KIND_BIT["ESTABLISHED"]
    largest_stateless = _layout(but_established, _all_tries(), contract.MAX_GENERAL, contract.MAX_RULES,
                                _full_depths())
    add("all-kinds-all-actions-largest", replace(_within_budget(largest_stateless), actions=every_action),
        every_option)
    # --established beside redirect --to holds fewer general rules (layout.py).
    capped = _layout(every_kind, _all_tries(), MAX_GENERAL_ESTABLISHED_REDIRECT, contract.MAX_RULES,
                     _full_depths())
    add("established-all-actions-largest", replace(_within_budget(capped), actions=every_action), every_option)
    # Rate limits (limit_kern.h): after the search, up to XDPCTL_LIMIT_K bucket lookups.
    thousand = next(v.layout for v in out if v.name == "all-kinds-1000-rules")
    add("limits-all-kinds-1000-rules", replace(thousand, actions=contract.FEAT_LIMITS))
    add("limits-stateless-largest", replace(_within_budget(largest_stateless), actions=contract.FEAT_LIMITS | contract.FEAT_BANS),
        every_option)
    add("limits-established-capped", replace(_within_budget(capped), actions=contract.FEAT_LIMITS | contract.FEAT_BANS), every_option)
    add("limits-established-all-actions-capped",
        replace(_within_budget(capped), actions=every_action | contract.FEAT_LIMITS | contract.FEAT_BANS), every_option)

    cap = contract.TRACE_CAP_MAX
    out.append(Variant("traced-options-all", FilterOptions.from_bits(every_option), Layout(), every_option, cap))
    traced_thousand = replace(_layout(every_kind, _all_tries(), 1000, 1000), actions=every_action)
    out.append(Variant("traced-all-kinds-all-actions-1000-rules", FilterOptions.from_bits(every_option), traced_thousand,
                       every_option, cap))
    return out

