"""xdpctl.toml: reading (every error with its line), writing, and the plan."""

from __future__ import annotations

import os

import pytest

from xdpctl.datapath import contract
from xdpctl.datapath.layout import MAX_GENERAL_ESTABLISHED_REDIRECT
from xdpctl.rules.config_file import dump, load, parse
from xdpctl.lifecycle.deploy import Current
from xdpctl.errors import BadInput
from xdpctl.datapath.layout import Layout
from xdpctl.rules.plan import plan_interface
from xdpctl.datapath.program import FilterOptions

GOOD = """\
# a comment
[interfaces.eth0]
mode = "native"
policy = "deny"
drop_non_ip = true
rules = [
  { action = "drop", src = "203.0.113.0/24", proto = "udp", dport = 53 },
  { action = "pass", src_mac = "02:00:00:00:00:01", priority = 10 },
  { action = "drop", src = "2001:db8::/32", proto = "tcp", dport = "22-25" },
  { action = "drop", vlan = 100, proto = "icmp", icmp_type = 8 },
  { action = "drop", proto = "tcp", tcp_flags = "syn,!ack", dst = "198.51.100.7" },
  { action = "drop", ethertype = "0x88cc" },
]

[interfaces."eth1.100"]
rules = []
"""


def test_a_good_file():
    c = parse(GOOD)
    eth0 = c.interfaces["eth0"]
    assert (eth0.mode, eth0.policy, eth0.drop_non_ip) == ("native", "deny", True)
    assert [r.line for r in eth0.rules] == [7, 8, 9, 10, 11, 12]
    assert eth0.rules[1].priority == 10 and eth0.rules[0].priority is None
    assert str(eth0.rules[4].match.dst) == "198.51.100.7/32"
    assert c.interfaces["eth1.100"].rules == [] and c.interfaces["eth1.100"].policy == "allow"


@pytest.mark.parametrize("change, line, why", [
    (('src = "203.0.113.0/24"', 'src = "203.0.113.0/33"'), 7, "not an IPv4 or IPv6"),
    (('src = "203.0.113.0/24"', 'src = "203.0.113.1/24"'), 7, "host bits"),
    (("dport = 53", "dport = 0"), 7, "from 1 to 65535"),
    (("dport = 53", "dport = 65536"), 7, "from 1 to 65535"),
    (('dport = "22-25"', 'dport = "25-22"'), 9, "reversed"),
    (('priority = 10', 'priority = 10, colour = "red"'), 8, "unknown rule key 'colour'"),
    (('policy = "deny"', 'policy = "maybe"'), 4, "allow or deny"),
    (('mode = "native"', 'mode = "turbo"'), 3, "not one of"),
    (("drop_non_ip = true", "drop_non_ip = true\nmtu = 1500"), 6, "unknown key 'mtu'"),
    (('{ action = "drop", ethertype = "0x88cc" }', '{ action = "drop", ethertype = "0x88cc" },\n  { action = "drop", ethertype = "0x88cc" }'), 13, "duplicate rule: the same as line 12"),
    (('{ action = "drop", vlan = 100', '{ action = "block", vlan = 100'), 10, "is not one of: pass, drop, redirect, tx"),
    (("icmp_type = 8", "icmp_code = 8"), 10, "icmp_code needs icmp_type"),
    (('proto = "udp", dport = 53', 'proto = "udp", dport = 53, tcp_flags = "syn"'), 7, "tcp_flags needs proto tcp"),
    (('rules = [', 'rules = [\n  { action = "drop", src = "10.0.0.0/8", dst = "2001:db8::/32" },'), 7, "different families"),
    (("[interfaces.eth0]", "[interfaces.eth0]\n[interfaces.eth0]"), 3, "not valid TOML"),
    (('[interfaces."eth1.100"]', '[interfaces.abcdefghijklmnopq]'), 15, "at most 15"),
])
def test_every_bad_value_is_reported_with_its_line(change, line, why):
    with pytest.raises(BadInput) as err:
        parse(GOOD.replace(*change), "x.toml")
    assert str(err.value).startswith(f"x.toml:{line}: "), str(err.value)
    assert why in str(err.value)


def test_array_of_tables_form_gets_lines_too():
    text = '[interfaces.eth0]\n\n[[interfaces.eth0.rules]]\naction = "drop"\nproto = "udp"\n\n' \
           '[[interfaces.eth0.rules]]\naction = "drop"\ndport = 0\n'
    with pytest.raises(BadInput, match=r"^x.toml:7: dport must be"):
        parse(text, "x.toml")


def test_crlf_files_read_the_same():
    assert parse(GOOD.replace("\n", "\r\n")).interfaces["eth0"].rules == parse(GOOD).interfaces["eth0"].rules
    with pytest.raises(BadInput, match=r"^x.toml:7: "):
        parse(GOOD.replace("/24", "/33").replace("\n", "\r\n"), "x.toml")


def test_file_checks(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        load(str(tmp_path / "missing.toml"))
    with pytest.raises(BadInput, match="is a directory"):
        load(str(tmp_path))
    f = tmp_path / "x.toml"
    f.write_text(GOOD)
    os.chmod(f, 0o666)
    with pytest.raises(BadInput, match="writable by others"):
        load(str(f))
    os.chmod(f, 0o600)
    assert load(str(f)).interfaces["eth0"].policy == "deny"
    f.write_bytes(GOOD.encode().replace(b"a comment", b"a comm\xe9nt"))
    with pytest.raises(BadInput, match=r"x.toml:1: not UTF-8"):
        load(str(f))
    if os.geteuid() == 0:
        f.write_text(GOOD)
        os.chown(f, 65534, 65534)
        with pytest.raises(BadInput, match="not by root"):
            load(str(f))


def as_current(iface, ids_from=1):
    """An interface already running what the file says (as apply leaves it)."""
    p = plan_interface(iface, None)
    return Current(p.options, p.mode, Layout(), 0, p.rules, p.next_id, p.next_seq)


def test_plan_of_a_fresh_interface_then_nothing():
    iface = parse(GOOD).interfaces["eth0"]
    first = plan_interface(iface, None)
    assert first.kind == "attach" and len(first.rules) == 6
    assert [r.id for r in first.rules] == [1, 2, 3, 4, 5, 6] and len({r.slot for r in first.rules}) == 6
    again = plan_interface(iface, as_current(iface))
    assert again.kind == "none" and again.lines == []


def test_plan_keeps_ids_and_slots_of_unchanged_rules():
    iface = parse(GOOD).interfaces["eth0"]
    current = as_current(iface)
    changed = parse(GOOD.replace("dport = 53", "dport = 54")).interfaces["eth0"]
    p = plan_interface(changed, current)
    assert p.kind == "change"
    assert p.lines[0].startswith("eth0: - rule 1: drop src 203.0.113.0/24")
    assert p.lines[1].startswith("eth0: + drop src 203.0.113.0/24 proto udp dport 54")
    old = {r.identity: (r.id, r.slot) for r in current.rules}
    kept_slots = {old[r.identity][1] for r in p.rules if r.identity in old}
    new = [r for r in p.rules if r.identity not in old]
    assert len(new) == 1 and new[0].id == 7 and new[0].slot not in kept_slots
    for r in p.rules:
        if r.identity in old:
            assert (r.id, r.slot) == old[r.identity]


def test_plan_reorders_and_changes_options():
    iface = parse(GOOD).interfaces["eth0"]
    current = as_current(iface)
    swapped = parse(GOOD.replace('  { action = "drop", vlan', '  { action = "drop", vlan', 1)).interfaces["eth0"]
    swapped.rules[2], swapped.rules[3] = swapped.rules[3], swapped.rules[2]
    p = plan_interface(swapped, current)
    assert p.lines == ["eth0: reorder the rules as the file has them"]
    relaxed = parse(GOOD.replace('policy = "deny"', 'policy = "allow"')).interfaces["eth0"]
    p = plan_interface(relaxed, current)
    assert p.lines == ["eth0: options policy deny, drop-non-ip -> policy allow, drop-non-ip "
                       "(a new program, swapped in atomically)"]
    assert p.options == FilterOptions(drop_non_ip=True, policy_deny=False)


def test_dump_round_trips():
    c = parse(GOOD)
    entries = []
    for name, iface in c.interfaces.items():
        p = plan_interface(iface, None)
        from xdpctl.rules.model import sort_rules

        entries.append((name, p.mode, iface.policy, iface.drop_non_ip, sort_rules(p.rules)))
    text = dump(entries)
    back = parse(text)
    for name, iface in c.interfaces.items():
        again = plan_interface(back.interfaces[name], as_current(iface))
        assert again.kind == "none", again.lines
    assert dump([(n, m, pol, d, r) for n, m, pol, d, r in entries]) == text
    assert contract.PRIORITY_DEFAULT == 1000


def test_past_the_rule_limits_the_line_of_the_first_rule_too_many():
    general = "\n".join(f'  {{ action = "drop", proto = "udp", dport = {p} }},'
                        for p in range(1, contract.MAX_GENERAL + 2))
    with pytest.raises(BadInput) as err:
        parse(f"[interfaces.eth0]\nrules = [\n{general}\n]\n")
    assert str(err.value).startswith(f"xdpctl.toml:{contract.MAX_GENERAL + 3}: more than 16,384 rules for eth0 "
                                     "that match more than one prefix")
    # Plain prefix rules do not count against that limit.
    plain = "\n".join(f'  {{ action = "drop", src = "10.{i >> 8}.{i & 255}.0/24" }},'
                      for i in range(contract.MAX_GENERAL + 1))
    assert len(parse(f"[interfaces.eth0]\nrules = [\n{plain}\n]\n").interfaces["eth0"].rules) == 16385


def test_write_is_whole_or_nothing_and_a_missing_directory_is_one_line(tmp_path):
    from xdpctl.safe_files import write

    target = tmp_path / "xdpctl.toml"
    write(str(target), "[interfaces]\n")
    assert target.read_text() == "[interfaces]\n" and oct(target.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(BadInput, match=r"^cannot write .*/nodir/x.toml: No such file or directory; create its directory first$"):
        write(str(tmp_path / "nodir" / "x.toml"), "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xdpctl.toml"]


def test_established_beside_redirect_to_holds_fewer_general_rules():
    """A program with both the flow table's lookup and redirect --to verifies
    with at most MAX_GENERAL_ESTABLISHED_REDIRECT general rules (layout.py);
    either alone keeps the full limit."""
    cap = MAX_GENERAL_ESTABLISHED_REDIRECT
    general = [f'  {{ action = "drop", proto = "udp", dport = {p} }},' for p in range(1, cap - 1)]
    both = ['  { action = "pass", established = true },', '  { action = "redirect", to = "eth1", proto = "tcp" },']
    at_cap = "\n".join(general + both)
    assert len(parse(f"[interfaces.eth0]\nrules = [\n{at_cap}\n]\n").interfaces["eth0"].rules) == cap
    over = "\n".join(general + ['  { action = "drop", proto = "udp", dport = 65000 },'] + both)
    with pytest.raises(BadInput) as err:
        parse(f"[interfaces.eth0]\nrules = [\n{over}\n]\n")
    # The first rule past the cap is named: line 3 is the first rule.
    assert str(err.value) == (f"xdpctl.toml:{cap + 3}: more than 8,192 rules for eth0 that match more than one "
                              "prefix, the most xdpctl holds per interface when --established and redirect --to "
                              "rules are on it together (plain src or dst rules do not count)")
    for one in both:  # either alone: one general rule more is fine
        text = "\n".join(general + ['  { action = "drop", proto = "udp", dport = 65000 },',
                                     '  { action = "drop", proto = "udp", dport = 65001 },', one])
        assert len(parse(f"[interfaces.eth0]\nrules = [\n{text}\n]\n").interfaces["eth0"].rules) == cap + 1
