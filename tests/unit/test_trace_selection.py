"""What `xdpctl trace` writes into trace_cfg for a selection, checked
against the contract's codes (no kernel needed)."""

from __future__ import annotations

import pytest

from xdpctl.datapath import contract
from xdpctl.datapath.program import filter_program, trace_capacity, FilterOptions
from xdpctl.errors import BadInput
from xdpctl.observe.capture import Selection


def test_verdict_masks():
    assert Selection().verdict_mask() == 1 << contract.VERDICTS.index("drop")
    assert Selection(verdicts=("pass", "drop")).verdict_mask() == 0b11
    assert Selection(verdicts=("any",)).verdict_mask() == (1 << len(contract.VERDICTS)) - 1


def test_class_masks_by_name_and_family():
    assert Selection().class_mask() == (1 << len(contract.CLASSES)) - 1
    assert Selection(classes=("arp",)).class_mask() == 1 << contract.CLASSES.index("arp")
    ipv4 = Selection(classes=("ipv4",)).class_mask()
    assert ipv4 == sum(1 << c for c, name in enumerate(contract.CLASSES) if name.startswith("ipv4/"))
    assert ipv4 and not ipv4 & (1 << contract.CLASSES.index("arp"))


@pytest.mark.parametrize("selection, words", [
    (Selection(verdicts=("dropped",)), "--verdict dropped"),
    (Selection(classes=("ipv5",)), "no such class"),
    (Selection(sample=0), "--sample 0"),
    (Selection(snaplen=0), "--snaplen 0"),
    (Selection(snaplen=contract.TRACE_CAP_MAX + 1), "--snaplen"),
    (Selection(rule="three"), "a rule id"),
])
def test_bad_selections_are_one_line(selection, words):
    with pytest.raises(BadInput) as exc:
        selection.check()
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_record_capacity_is_a_few_powers_of_two():
    assert [trace_capacity(n) for n in (1, 64, 65, 128, 1500, 4096)] == [64, 64, 128, 128, 2048, 4096]
    flags = filter_program(FilterOptions(), "/sys/fs/bpf/x", trace_cap=2048).cflags()
    assert "-DXDPCTL_TRACE" in flags and "-DXDPCTL_TRACE_CAP=2048" in flags
    assert "-DXDPCTL_TRACE" not in filter_program(FilterOptions(), "/sys/fs/bpf/x").cflags()
    with pytest.raises(ValueError):
        filter_program(FilterOptions(), None, trace_cap=64)  # the trace maps are pinned


def test_who_decided_selects_one_decider_each():
    from xdpctl.observe.capture import _rule_filter, comment

    for name in ("policy", "drop-non-ip", "ban"):
        Selection(rule=name).check()
        mask, slot = _rule_filter(Selection(rule=name), None, {})
        assert mask == 1 << contract.TRACE_BY.index(name) and slot == contract.TRACE_ANY_SLOT
    assert _rule_filter(Selection(), None, {})[0] == (1 << len(contract.TRACE_BY)) - 1
    assert comment("drop", "ban", None, "ipv4/udp") == "verdict=drop rule=ban class=ipv4/udp"
