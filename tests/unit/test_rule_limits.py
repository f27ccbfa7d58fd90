"""rule add's limits: the total, and rules that are more than one prefix."""

from __future__ import annotations

from unittest import mock

import pytest

from xdpctl.datapath import contract
from xdpctl.datapath.layout import MAX_GENERAL_ESTABLISHED_REDIRECT
from xdpctl.lifecycle import ruleops
from xdpctl.lifecycle.ruleops import RuleLimit
from xdpctl.rules.model import ACTIONS, Rule, parse_match

PLAIN = parse_match({"src": "198.51.100.1"})
GENERAL = parse_match({"proto": "udp", "dport": "53"})


def rules(n: int, match) -> list[Rule]:
    return [Rule(ACTIONS["drop"], match, id=i + 1, seq=i + 1, slot=i) for i in range(n)]


def test_plain_rules_count_only_against_the_total():
    with mock.patch.object(contract, "MAX_RULES", 10), mock.patch.object(contract, "MAX_GENERAL", 3):
        ruleops.check_limits("eth0", rules(10, PLAIN))  # at the limit: fine
        with pytest.raises(RuleLimit, match=r"eth0 would have 11 rules; xdpctl holds at most 10 .*Nothing was changed"):
            ruleops.check_limits("eth0", rules(11, PLAIN))


def test_general_rules_have_their_own_limit():
    with mock.patch.object(contract, "MAX_RULES", 10), mock.patch.object(contract, "MAX_GENERAL", 3):
        ruleops.check_limits("eth0", rules(3, GENERAL) + rules(5, PLAIN))
        with pytest.raises(RuleLimit, match=r"4 rules that match more than one prefix; .* at most 3 "):
            ruleops.check_limits("eth0", rules(4, GENERAL))


def test_established_beside_redirect_to_halves_the_general_limit():
    """rule add refuses what the config file refuses (layout.py's cap): the
    verifier walks fewer general rules when both are in one program."""
    cap = MAX_GENERAL_ESTABLISHED_REDIRECT
    established = Rule(ACTIONS["pass"], parse_match({"established": True}), id=90001, seq=90001, slot=90000)
    redirect = Rule(contract.ACTION_REDIRECT, GENERAL, id=90002, seq=90002, slot=90001)
    ruleops.check_limits("eth0", rules(cap - 1, GENERAL) + [established])  # no redirect: under MAX_GENERAL
    ruleops.check_limits("eth0", rules(cap + 1, GENERAL))
    ruleops.check_limits("eth0", rules(cap - 2, GENERAL) + [established, redirect])  # at the cap
    with pytest.raises(RuleLimit, match=rf"^eth0 would have 8,193 rules that match more than one prefix; xdpctl "
                                        rf"holds at most 8,192 such rules per interface when --established and "
                                        rf"redirect --to rules are on it together .*Nothing was changed$"):
        ruleops.check_limits("eth0", rules(cap - 1, GENERAL) + [established, redirect])
