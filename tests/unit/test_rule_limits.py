"""rule add's limits: the total, and rules that are more than one prefix."""

from __future__ import annotations

from unittest import mock

import pytest

from xdpctl.datapath import contract
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
