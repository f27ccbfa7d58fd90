"""The list of variants (xdpctl/datapath/variants.py) covers the contract:
every option bit and every kind of match the C header declares, every trie,
the general search over several summary words, and the largest sizes the
limits allow. A new option or kind without a variant fails here."""

from __future__ import annotations

import re

from xdpctl.datapath import contract, variants
from xdpctl.datapath.layout import ACTION_SWITCHES, KIND_BIT, MAX_GENERAL_ESTABLISHED_REDIRECT, Layout, depth_for
from xdpctl.datapath.program import bpf_dir, filter_program
from xdpctl.rules import synthetic
from xdpctl.rules.tables import build

HEADER = (bpf_dir() / "xdpctl_kern_user.h").read_text()
ALL = variants.variants()


def header_bits(prefix: str) -> dict[str, int]:
    """XDPCTL_<prefix>* bits as the C declares them: (1U << n)."""
    return {name: 1 << int(shift)
            for name, shift in re.findall(r"^#define[ \t]+XDPCTL_%s(\w+)[ \t]+\(1U << (\d+)\)" % prefix, HEADER, re.M)}


def test_every_option_of_the_header_has_variants_alone_and_together():
    bits = header_bits("OPT_")
    assert bits and sorted(bits.values()) == variants.option_bits()
    no_rules = {v.option_bits for v in ALL if not v.layout.engine}
    for bit in bits.values():
        assert bit in no_rules, f"no variant with option {bit:#x} alone"
    assert sum(bits.values()) in no_rules and 0 in no_rules
    for v in ALL:  # FilterOptions must carry every bit asked for, or the variant is not what it says
        assert v.options.bits == v.option_bits, v.name


def test_every_kind_of_the_header_has_a_variant_alone_and_all_together():
    kinds = {name: bit for name, bit in header_bits("KIND_").items()}
    assert kinds == dict(contract.KINDS)
    alone = {v.layout.kinds for v in ALL}
    for name, bit in kinds.items():
        assert bit in alone, f"no variant with the {name} kind alone"
    every = sum(kinds.values())
    together = [v for v in ALL if v.layout.kinds == every]
    smallest = min(together, key=lambda v: v.layout.tables_size)
    assert smallest.layout.caps == tuple(64 for _ in kinds)  # the smallest tier


def test_every_trie_and_both_address_families():
    tries = {name: bit for name, bit in contract.TRIES}
    used = 0
    for v in ALL:
        used |= v.layout.tries
    assert used == sum(tries.values())
    src = KIND_BIT["SRC"]
    for family in ("SRC4", "SRC6"):
        assert any(v.layout.kinds == src and v.layout.tries == tries[family] for v in ALL), family
    assert any(v.layout.kinds == src and v.layout.words == 0 for v in ALL)  # plain: no general search
    assert any(v.layout.kinds == src and v.layout.words > 0 for v in ALL)


def test_the_general_search_over_one_and_several_summary_words():
    words = {contract.summary_words(v.layout.words) for v in ALL if v.layout.words}
    assert {1, 2} <= words
    # As many as the limit allows: MAX_GENERAL rules, one bit each.
    assert max(words) == contract.summary_words(-(-contract.MAX_GENERAL // 64))
    # The 1,000-rule synthetic set (xdpctl bench --rules 1000) builds a layout of the same shape.
    mixed = Layout().grown(build(synthetic.mixed(1000)).needs)
    assert any(contract.summary_words(v.layout.words) == contract.summary_words(mixed.words)
               and v.layout.kinds & mixed.kinds == mixed.kinds for v in ALL)


def test_the_largest_sizes_the_limits_allow():
    largest = max(ALL, key=lambda v: (v.layout.decisions, v.layout.words))
    layout = largest.layout
    assert layout.words * 64 >= contract.MAX_GENERAL
    assert layout.decisions >= contract.MAX_RULES and layout.slots >= contract.MAX_RULES
    assert max(layout.depths) == depth_for(128)  # an IPv6 /128
    assert largest.option_bits == sum(variants.option_bits())
    assert layout.tables_size <= variants.TABLE_BUDGET
    plain = [v for v in ALL if v.layout.decisions >= contract.MAX_RULES and not v.layout.words]
    assert plain, "no block list at the limit"


def test_every_action_of_the_header_has_a_variant_alone_together_and_at_the_largest():
    acts = header_bits("ACTS_")
    assert acts == {name: bit for name, bit in contract.ACTS}
    compiled = {v.layout.actions for v in ALL if v.layout.engine}
    for name, bit in acts.items():
        assert bit in compiled, f"no variant with the {name} action alone"
    every = sum(acts.values())
    assert every in compiled
    at_scale = [v for v in ALL if v.layout.actions == every and v.layout.decisions >= contract.MAX_RULES]
    stateless = sum(KIND_BIT.values()) & ~KIND_BIT["ESTABLISHED"]
    # Every stateless kind at the general rules' limit; with --established
    # too at the limit a program holding it and redirect --to has.
    assert {(v.layout.kinds, min(v.layout.words * 64, contract.MAX_GENERAL)) for v in at_scale} == {
        (stateless, contract.MAX_GENERAL),
        (sum(KIND_BIT.values()), MAX_GENERAL_ESTABLISHED_REDIRECT)}
    assert all(v.option_bits == sum(variants.option_bits()) for v in at_scale)
    for v in ALL:  # each action's switch is in the flags of exactly the variants that have it
        flags = filter_program(v.options, "/sys/fs/bpf/xdpctl-variants", v.layout).cflags()
        for bit, switch, _ in ACTION_SWITCHES:
            assert (f"-D{switch}" in flags) == bool(v.layout.actions & bit), (v.name, switch)


def test_names_are_unique_and_every_variant_builds():
    names = [v.name for v in ALL]
    assert len(set(names)) == len(names)
    for v in ALL:
        request = filter_program(v.options, "/sys/fs/bpf/xdpctl-variants", v.layout, v.trace_cap)
        assert request.variant == v.describe()
        flags = request.cflags()
        assert ("-DXDPCTL_TRACE" in flags) == bool(v.trace_cap), v.name
        for name, bit in contract.KINDS:
            assert (f"-DXDPCTL_USE_{name}" in flags) == bool(v.layout.kinds & bit), (v.name, name)


def test_a_new_option_adds_variants(monkeypatch):
    """The list follows the contract: with one more option bit, it has a
    variant with it alone (and FilterOptions, which drops unknown bits, makes
    test_every_option_of_the_header_has_variants_alone_and_together fail
    until the option is built)."""
    before = len(variants.variants())
    monkeypatch.setattr(contract, "OPT_EXTRA", 1 << 5, raising=False)
    assert 1 << 5 in variants.option_bits()
    with_option = variants.variants()
    assert len(with_option) == before + 1  # the new option alone (and in "all together")
    assert any(v.option_bits == 1 << 5 for v in with_option)


def test_the_trace_capture_path_has_variants():
    traced = [v for v in ALL if v.trace_cap]
    assert {v.trace_cap for v in traced} == {contract.TRACE_CAP_MAX}  # the largest record
    assert any(not v.layout.engine for v in traced)
    assert any(v.layout.kinds == sum(b for _, b in contract.KINDS) and v.layout.actions for v in traced)
