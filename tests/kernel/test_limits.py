"""Rate limits (--over) on a veth lab, through separate xdpctl processes:
a burst from the peer passes exactly `burst` frames and the rule drops the
rest (its hits, the UDP class's counters); the buckets survive a replace of
the program; rule list --json, export and apply carry the limit, and a
second apply of the export changes nothing; each limited rule has a table
of its own size, new with the rule and gone with it. Bad input is refused
and changes nothing. The rate itself, to the frame, is in test_limits_prog_run.py."""

from __future__ import annotations

import os

import pytest

from conftest import snapshot
from xdpctl.traffic import frames

pytestmark = pytest.mark.kernel


def udp(klab, n: int, total: int | None = None) -> dict:
    """Send n UDP frames; the counters once total (n) frames are counted."""
    ep = klab.lab.endpoints()
    klab.send([frames.udp_frame(ep, b"x" * 18)], n)
    return klab.wait_for_total(total or n)


def udp_counts(counters: dict) -> tuple[int, int]:
    c = counters["ipv4/udp"]
    return c["pass"]["packets"], c["drop"]["packets"]


def rule_entry(klab) -> dict:
    (entry,) = [r for r in klab.xdpctl.json("rule", "list", klab.iface)["rules"] if "over" in r]
    return entry


@pytest.mark.matrix
def test_a_burst_passes_burst_frames_and_the_buckets_survive_a_replace(klab):
    klab.xdpctl("attach", klab.iface)
    # 1/h: no token comes back while the test runs, so every count is exact.
    klab.xdpctl("rule", "add", klab.iface, "drop", "--over", "1/h", "--burst", "5", "--proto", "udp")
    entry = rule_entry(klab)
    assert {k: entry[k] for k in ("over", "burst", "per", "table", "ceiling")} == {
        "over": "1/h", "burst": 5, "per": "src", "table": 65536, "ceiling": "64/h"}
    assert entry["match"] == {"proto": "udp"}
    assert udp_counts(udp(klab, 8)) == (5, 3)
    assert rule_entry(klab)["hits"]["packets"] == 3
    seen = rule_entry(klab)["limit"]
    frame = len(frames.udp_frame(klab.lab.endpoints(), b"x" * 18))
    assert seen == {"within": {"packets": 5, "bytes": 5 * frame}, "keys": 1, "evictions": 0, "ceiling_over": 0}
    (stats,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    assert [r["limit"] for r in stats["rules"] if "limit" in r] == [seen]

    # A new kind of match: a new program. The buckets are pinned, so the
    # source's bucket is still empty and every frame goes over.
    before = klab.xdpctl.json("status")["interfaces"][0]["prog_id"]
    klab.xdpctl("rule", "add", klab.iface, "pass", "--vlan", "7")
    assert klab.xdpctl.json("status")["interfaces"][0]["prog_id"] != before
    assert udp_counts(udp(klab, 4, 8 + 4)) == (5, 7)
    assert rule_entry(klab)["hits"]["packets"] == 7
    assert rule_entry(klab)["limit"]["within"]["packets"] == 5 and rule_entry(klab)["limit"]["keys"] == 1


def test_export_and_apply_carry_the_limit(klab, tmp_path):
    """export writes the limit; apply of it changes nothing; on a fresh
    attachment it makes the same rule."""
    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "drop", "--over", "1/h", "--burst", "5", "--proto", "udp")
    klab.xdpctl("rule", "add", klab.iface, "drop", "--over", "10/s", "--per", "flow", "--table", "2048",
                "--proto", "tcp")
    entry = rule_entry_of(klab, "udp")
    exported = klab.xdpctl("export").stdout
    assert 'over = "1/h", burst = 5, per = "src", table = 65536, ceiling = "64/h"' in exported
    assert 'over = "10/s", burst = 10, per = "flow", table = 2048, ceiling = "640/s"' in exported
    path = tmp_path / "x.toml"
    path.write_text(exported)
    os.chmod(path, 0o600)
    assert "nothing to change" in klab.xdpctl("apply", str(path)).stdout
    klab.xdpctl("detach", klab.iface)
    klab.xdpctl("apply", str(path))
    again = rule_entry_of(klab, "udp")
    assert {k: again[k] for k in ("over", "burst", "per", "table", "ceiling")} == {
        k: entry[k] for k in ("over", "burst", "per", "table", "ceiling")}
    assert rule_entry_of(klab, "tcp")["table"] == 2048 and sorted(tables(klab).values()) == [2048, 65536]
    assert "nothing to change" in klab.xdpctl("apply", str(path)).stdout


@pytest.mark.parametrize("args, fragment", [
    (["--block", "0s"], "no time at all"),
    (["--table", "8"], "--table must be from 16 to 4,194,304 keys"),
    (["--over", "0/s"], "a rate of 0"),
    (["--per", "src/33"], "an IPv4 prefix is 1 to 32 bits"),
])
def test_what_is_refused_changes_nothing(klab, args, fragment):
    klab.xdpctl("attach", klab.iface)
    before = snapshot(klab)
    over = [] if "--over" in args else ["--over", "10/s"]
    r = klab.xdpctl("rule", "add", klab.iface, "drop", *over, *args, check=False)
    assert r.returncode == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert snapshot(klab) == before


def test_block_bans_the_source_the_ban_drops_and_ban_add_del_list(klab):
    """--over 1/h --burst 2 --block 6s: the third frame goes over and bans
    the peer; every later frame is dropped by the ban (counted in the UDP
    class's drop and in the ban, not in the rule's hits); the ban expires by
    itself; ban add/del/list edit and read the list with no reload."""
    klab.xdpctl("attach", klab.iface)
    assert klab.xdpctl.json("ban", "list", klab.iface)["bans"] == []  # no list compiled in yet: no bans
    klab.xdpctl("rule", "add", klab.iface, "drop", "--over", "1/h", "--burst", "2", "--block", "6s",
                "--proto", "udp")
    prog = klab.xdpctl.json("status")["interfaces"][0]["prog_id"]
    assert udp_counts(udp(klab, 5)) == (2, 3)
    (ban,) = klab.xdpctl.json("ban", "list", klab.iface)["bans"]
    rid = rule_entry(klab)["id"]
    assert rule_entry(klab)["hits"]["packets"] == 1  # the frame that went over; the ban took the rest
    frame = len(frames.udp_frame(klab.lab.endpoints(), b"x" * 18))
    assert ban == {"address": klab.lab.peer4, "seconds_left": ban["seconds_left"], "packets": 2,
                   "bytes": 2 * frame, "rule": rid} and 1 <= ban["seconds_left"] <= 6
    (stats,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    assert stats["bans"] == {"bans": 1, "packets": 2, "bytes": 2 * frame}
    # The ban ends by itself; the source's bucket is still empty: over again, banned again.
    import time

    deadline = time.monotonic() + 8
    while klab.xdpctl.json("ban", "list", klab.iface)["bans"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert klab.xdpctl.json("ban", "list", klab.iface)["bans"] == []
    assert udp_counts(udp(klab, 1, 6)) == (2, 4)
    assert rule_entry(klab)["hits"]["packets"] == 2
    # By hand: another address, then lifted; nothing recompiled.
    klab.xdpctl("ban", "add", klab.iface, "203.0.113.9", "--for", "1h")
    listed = {b["address"]: b for b in klab.xdpctl.json("ban", "list", klab.iface)["bans"]}
    assert listed["203.0.113.9"]["rule"] is None and 3590 < listed["203.0.113.9"]["seconds_left"] <= 3600
    assert "lifted" in klab.xdpctl("ban", "del", klab.iface, "203.0.113.9").stdout
    r = klab.xdpctl("ban", "del", klab.iface, "203.0.113.9", check=False)
    assert r.returncode == 2 and "has no ban on 203.0.113.9" in r.stderr
    for bad, fragment in (("203.0.113.0/24", "is a prefix"), ("nope", "is not an IPv4 or IPv6 address"),
                          ("::ffff:1.2.3.4", "IPv4-mapped")):
        r = klab.xdpctl("ban", "add", klab.iface, bad, "--for", "1h", check=False)
        assert r.returncode == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = klab.xdpctl("ban", "add", klab.iface, "203.0.113.9", "--for", "99999d", check=False)
    assert r.returncode == 2 and "longer than 3650 days" in r.stderr
    assert klab.xdpctl.json("status")["interfaces"][0]["prog_id"] == prog


def buckets_pin(klab) -> str:
    """The path of the interface's buckets map (lbuckets_<slots>)."""
    from state_checks import attachment

    att = attachment(klab)
    (name,) = [n for n in att.pins() if n.startswith("lbuckets_")]
    return att.pin(name)


def buckets_memory(klab) -> tuple[int, int]:
    """The one limited rule's table: (max_entries, locked memory in bytes)."""
    from xdpctl.rules import limit_tables

    (table,) = limit_tables.memory(buckets_pin(klab)).values()
    return table["max_entries"], table["memlock_bytes"]


def tables(klab) -> dict[int, int]:
    """slot -> the size of its table, for every table the interface holds."""
    from xdpctl.rules import limit_tables

    return {s: t["max_entries"] for s, t in limit_tables.memory(buckets_pin(klab)).items()}


def test_table_sizes_each_rule_its_table_new_with_the_rule_and_gone_with_it(klab):
    """--table 1024 makes that rule's table 1,024 keys, beside another's
    default; a rule deleted and added again starts with full buckets (a new
    table, not the spent one); a deleted rule's table goes at the next change."""
    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "drop", "--over", "1/h", "--burst", "2", "--table", "1024",
                "--proto", "udp")
    klab.xdpctl("rule", "add", klab.iface, "drop", "--over", "1/h", "--proto", "tcp")
    udp_rule = rule_entry_of(klab, "udp")
    assert udp_rule["table"] == 1024 and sorted(tables(klab).values()) == [1024, 65536]
    assert udp_counts(udp(klab, 3)) == (2, 1)
    klab.xdpctl("rule", "del", klab.iface, str(udp_rule["id"]))
    klab.xdpctl("rule", "add", klab.iface, "drop", "--over", "1/h", "--burst", "2", "--table", "1024",
                "--proto", "udp")
    assert sorted(tables(klab).values()) == [1024, 65536]  # the deleted rule's table went; a new one came
    assert udp_counts(udp(klab, 3, 6)) == (4, 2)  # a full bucket again: 2 more passed
    assert rule_entry_of(klab, "udp")["limit"]["keys"] == 1
    # The TCP rule goes; the change after that one (the rule may be read until then) drops its table.
    klab.xdpctl("rule", "del", klab.iface, str(rule_entry_of(klab, "tcp")["id"]))
    klab.xdpctl("rule", "add", klab.iface, "pass", "--proto", "icmp")
    assert list(tables(klab).values()) == [1024]


def rule_entry_of(klab, proto: str) -> dict:
    (entry,) = [r for r in klab.xdpctl.json("rule", "list", klab.iface)["rules"] if r["match"] == {"proto": proto}]
    return entry


@pytest.mark.parametrize("held", [True, False], ids=["ceiling", "no-ceiling"])
def test_a_flood_from_100000_sources_is_held_by_the_ceiling_in_a_fixed_table(klab, held):
    """gen --src spreads 100,000 UDP frames over as many sources, each new to
    the rule's table. With the default ceiling (64 x 100/s: 6,400/s, a burst
    of 6,400) the frames passed are at least its burst and at most what it
    allows in the whole run; without it, every new source passes. Either way
    the table keeps its size and memory and the evictions add up."""
    import json
    import time

    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "drop", "--over", "100/s", *([] if held else ["--ceiling", "none"]),
                "--proto", "udp")
    before = buckets_memory(klab)
    start = time.monotonic()
    r = klab.xdpctl("gen", "--lab", klab.lab.name, "--profile", "udp-flood", "--src", "10.0.0.0/8",
                    "--count", "100000", "--json", timeout=300)
    sent = json.loads(r.stdout)
    assert (sent["frames"], sent["distinct_frames"]) == (100000, 100000)
    counters = klab.wait_for_total(100000)
    window = time.monotonic() - start
    entry = rule_entry(klab)
    seen = entry["limit"]
    passed, dropped = udp_counts(counters)
    assert (passed, dropped) == (seen["within"]["packets"], entry["hits"]["packets"]) and passed + dropped == 100000
    assert buckets_memory(klab) == before and before[0] == 65536
    # Each admitted source's first frame found a full bucket: keys added = frames passed.
    assert seen["keys"] <= 65536 and seen["evictions"] == passed - seen["keys"]
    if held:
        assert entry["ceiling"] == "6400/s"
        assert 6400 <= passed <= 6400 + 6400 * window, (passed, window)
        assert seen["ceiling_over"] == dropped
    else:
        assert passed == 100000 and dropped == 0 and seen["ceiling_over"] == 0
        assert seen["evictions"] >= 100000 - 65536  # the table churned


@pytest.mark.parametrize("with_rule", [False, True], ids=["no-rules", "a-rule"])
def test_ban_add_gives_a_program_without_a_ban_list_one(klab, with_rule):
    """The first `ban add` on a program without a ban list swaps in the same
    program with one (counters, rules and hits carry on); the ban drops at
    once; the next ban add and ban del change only the map."""
    klab.xdpctl("attach", klab.iface)
    if with_rule:
        klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "tcp", "--dport", "22")
    assert klab.xdpctl.json("ban", "list", klab.iface) == {
        "ifname": klab.iface, "bans": [], "total": {"bans": 0, "packets": 0, "bytes": 0}}
    r = klab.xdpctl("ban", "del", klab.iface, klab.lab.peer4, check=False)
    assert r.returncode == 2 and f"has no ban on {klab.lab.peer4}" in r.stderr
    assert udp_counts(udp(klab, 2)) == (2, 0)
    before = klab.xdpctl.json("status")["interfaces"][0]["prog_id"]
    out = klab.xdpctl("ban", "add", klab.iface, klab.lab.peer4, "--for", "1h").stdout
    assert "had no ban list: a new one with it was swapped in" in out
    prog = klab.xdpctl.json("status")["interfaces"][0]["prog_id"]
    assert prog != before
    assert udp_counts(udp(klab, 3, 5)) == (2, 3)  # the counters carried on; the ban dropped all 3
    (ban,) = klab.xdpctl.json("ban", "list", klab.iface)["bans"]
    assert (ban["address"], ban["packets"], ban["rule"]) == (klab.lab.peer4, 3, None)
    out = klab.xdpctl("ban", "add", klab.iface, "203.0.113.9", "--for", "1h").stdout
    assert "swapped" not in out and klab.xdpctl.json("status")["interfaces"][0]["prog_id"] == prog
    rules = klab.xdpctl.json("rule", "list", klab.iface)["rules"]
    assert [(r["match"], r["hits"]["packets"]) for r in rules] == ([({"proto": "tcp", "dport": 22}, 0)]
                                                                    if with_rule else [])
    klab.xdpctl("ban", "del", klab.iface, klab.lab.peer4)
    assert udp_counts(udp(klab, 1, 6)) == (3, 3)
    assert klab.xdpctl.json("status")["interfaces"][0]["prog_id"] == prog


@pytest.mark.parametrize("pin", ["lbuckets_", "bans", "limits_", "lstats_"])
def test_a_missing_limit_pin_is_put_back_as_the_same_map(klab, pin):
    """A pin of the limits removed behind xdpctl's back: doctor reports it,
    clean pins the program's own map again, and nothing is lost (the
    source's bucket is still spent; its ban still holds)."""
    import json

    from state_checks import attachment

    klab.xdpctl("attach", klab.iface)
    klab.xdpctl("rule", "add", klab.iface, "drop", "--over", "1/h", "--burst", "2", "--block", "1h",
                "--proto", "udp")
    assert udp_counts(udp(klab, 4)) == (2, 2)
    att = attachment(klab)
    (name,) = [n for n in att.pins() if n == pin or (pin.endswith("_") and n.startswith(pin))]
    os.unlink(att.pin(name))
    r = klab.xdpctl("doctor", "--json", check=False)
    assert r.returncode != 70, r.stderr
    (state,) = [c for c in json.loads(r.stdout)["checks"] if c["name"] == "state"]
    assert f"its {name} pin is missing" in state["detail"], state
    klab.xdpctl("clean")
    assert name in attachment(klab).pins()
    assert udp_counts(udp(klab, 2, 6)) == (2, 4)  # banned: the bucket and the ban were kept
    (ban,) = klab.xdpctl.json("ban", "list", klab.iface)["bans"]
    assert ban["packets"] == 1 + 2
