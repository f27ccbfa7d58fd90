"""selftest's verdict rows: a single differing byte fails its class."""

from __future__ import annotations

from xdpctl.datapath import counters
from xdpctl.checks.selftest import compare


def test_every_class_gets_a_row_and_any_difference_fails_it():
    expected = counters.empty()
    expected["ipv4/udp"]["pass"].update(packets=3, bytes=180)
    seen = counters.empty()
    seen["ipv4/udp"]["pass"].update(packets=3, bytes=180)
    rows = compare(expected, seen)
    assert [r.check for r in rows] == list(expected) and all(r.ok for r in rows)
    assert rows[1].expected == rows[1].seen == "pass 3 (180 B), drop 0 (0 B)"

    seen["ipv4/udp"]["pass"]["bytes"] = 181
    seen["arp"]["drop"]["packets"] = 1
    bad = {r.check for r in compare(expected, seen) if not r.ok}
    assert bad == {"ipv4/udp", "arp"}
