"""Issue 5, guarantee 13: hostile input. Whatever a rule option, an interface
name or a configuration file holds, xdpctl answers with a result or one line
of error and exit code 2, never a traceback; and values it accepts mean what
they say. No root and no kernel: `rule add` parses every value before it
touches anything, and the call that would change the kernel is replaced.

Already covered elsewhere, not repeated here: hand-picked bad values each
with their message (tests/kernel/test_rules.py, tests/unit/test_cli.py); a
missing file, a directory, a file writable by others or not root's, CRLF,
bad UTF-8, duplicate rules, more general rules than the tables hold, each
with its line (tests/unit/test_config_file.py).
"""

from __future__ import annotations

import ipaddress
import os
import string

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import xdpctl.lifecycle.ruleops
from xdpctl.datapath import contract
from xdpctl.cli import cli
from xdpctl.rules.config_file import MAX_FILE_BYTES, load, parse
from xdpctl.errors import BadInput
from xdpctl.rules.actions import NO_STEER
from xdpctl.rules.model import MATCH_KEYS, Rule, parse_match
from xdpctl.lifecycle.ruleops import Change

runner = CliRunner()
LIMITS: list = []  # the limit of each rule the no_kernel fixture recorded
FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

OPTIONS = ["--src", "--dst", "--proto", "--sport", "--dport", "--src-mac", "--dst-mac", "--vlan",
           "--ethertype", "--tcp-flags", "--icmp-type", "--icmp-code", "--priority"]


@pytest.fixture(autouse=True)
def no_kernel(monkeypatch):
    """`rule add` with every value accepted records the rule instead of changing the kernel."""
    calls = []

    def add(app, ifname, action, match, priority, steer=NO_STEER, limit=None):
        calls.append((ifname, action, match, priority, steer))
        LIMITS.append(limit)
        return Change(Rule(action, match, priority or contract.PRIORITY_DEFAULT, priority is not None, 1, 1, 0,
                           steer, limit), False, 1, [])

    LIMITS.clear()

    monkeypatch.setattr(xdpctl.lifecycle.ruleops, "add", add)
    return calls


def rule_add(*args: str):
    return runner.invoke(cli, ["rule", "add", *args])


def assert_refused(result, *fragments: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdpctl: error: "), result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


# --- anything at all --------------------------------------------------------------


@FAST
@given(option=st.sampled_from(OPTIONS), value=st.text(max_size=60))
@example(option="--src", value="10.0.0.0/8\x00")
@example(option="--dport", value="٣")  # a digit, but not an ASCII one
@example(option="--src-mac", value="02:00:00:00:00:0１")
def test_any_value_of_any_option_is_accepted_or_refused_in_one_line(no_kernel, option, value):
    no_kernel.clear()
    r = rule_add("eth0", "drop", option, value)
    assert "Traceback" not in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    if r.exit_code == 0:
        # Accepted: what was recorded reads back as the same rule.
        ((_, _, match, priority, _),) = no_kernel
        assert parse_match(match.describe()) == match
        if option == "--priority":
            assert priority == int(value.strip())
    else:
        assert_refused(r)
        assert no_kernel == []


@FAST
@given(args=st.lists(st.text(max_size=20), max_size=6))
def test_any_arguments_at_all(no_kernel, args):
    r = rule_add(*args)
    assert r.exit_code in (0, 2), (args, r.exit_code, r.output)
    if r.exit_code:
        assert_refused(r)


# --- where a redirect sends ------------------------------------------------------------

STEER_OPTIONS = ["--to", "--cpu", "--queue"]


@FAST
@given(action=st.sampled_from(["pass", "drop", "redirect", "tx"]),
       given_options=st.lists(st.sampled_from(STEER_OPTIONS), unique=True, max_size=3),
       value=st.text(max_size=40))
@example(action="redirect", given_options=["--to"], value="eth1,eth1")
@example(action="redirect", given_options=["--to"], value=",".join(f"e{i}" for i in range(65)))
@example(action="redirect", given_options=["--cpu", "--queue"], value="16385")
def test_any_steering_option_is_accepted_or_refused_in_one_line(no_kernel, action, given_options, value):
    """Whatever --to, --cpu and --queue hold, with whichever action: a
    steer that reads back as given, or one line and nothing recorded."""
    no_kernel.clear()
    r = rule_add("eth0", action, *(x for o in given_options for x in (o, value)))
    assert "Traceback" not in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    if r.exit_code:
        assert_refused(r)
        assert no_kernel == []
        return
    ((_, code, _, _, steer),) = no_kernel
    assert action == "redirect" or not given_options  # only redirect takes them
    if "--to" in given_options:
        names = [n.strip() for n in value.split(",")]
        assert [t.name for t in steer.to] == names and len(set(names)) == len(names) <= contract.MAX_TARGETS
        assert code == contract.ACTION_REDIRECT and steer.cpu is None
    elif "--cpu" in given_options:
        assert code == contract.ACTION_REDIRECT_CPU and steer.cpu == int(value.strip())
        assert 1 <= steer.queue_size <= contract.QUEUE_MAX


@pytest.mark.parametrize("args, fragments", [
    (["redirect"], ("redirect needs --to IF[,IF...]", "or --cpu N")),
    (["redirect", "--to", "eth1", "--cpu", "1"], ("--to and --cpu cannot be given together",)),
    (["pass", "--to", "eth1"], ("--to is for redirect",)),
    (["drop", "--cpu", "1"], ("--cpu is for redirect",)),
    (["tx", "--to", "eth1"], ("--to is for redirect", "tx sends a frame back out")),
    (["redirect", "--to", "eth1", "--queue", "64"], ("--queue sizes a CPU's queue",)),
    (["redirect", "--cpu", "1", "--queue", "0"], ("--queue must be from 1 to 16384",)),
    (["redirect", "--cpu", "1", "--queue", "16385"], ("--queue must be from 1 to 16384",)),
    (["redirect", "--cpu", "65536"], ("--cpu must be from 0 to 65535",)),
    (["redirect", "--to", "eth1,,eth2"], ("--to needs interface names",)),
    (["redirect", "--to", "eth1,eth1"], ("names eth1 twice",)),
    (["redirect", "--to", ",".join(f"e{i}" for i in range(65))], ("names 65 interfaces", "at most 64")),
    (["redirect", "--to", "a" * 16], ("at most 15",)),
])
def test_steering_options_that_do_not_hold_together_are_one_line(no_kernel, args, fragments):
    assert_refused(rule_add("eth0", *args), *fragments)
    assert no_kernel == []


# --- addresses ----------------------------------------------------------------------

v4 = st.ip_addresses(v=4)
v6 = st.ip_addresses(v=6)


@FAST
@given(addr=v4, plen=st.integers(0, 31))
def test_an_ipv4_prefix_with_host_bits_is_refused_with_the_network_meant(addr, plen):
    net = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
    if net.network_address == addr:
        return
    assert_refused(rule_add("eth0", "drop", "--src", f"{addr}/{plen}"), "has host bits set", f"did you mean {net}?")


@FAST
@given(addr=st.one_of(v4.map(lambda a: (a, 32)), v6.map(lambda a: (a, 128))), extra=st.integers(1, 10**6))
def test_a_prefix_longer_than_the_address_is_refused(addr, extra):
    a, width = addr
    assert_refused(rule_add("eth0", "drop", "--dst", f"{a}/{width + extra}"), "is not an IPv4 or IPv6 address or CIDR")


@FAST
@given(addr=v4, which=st.integers(0, 3), zeros=st.integers(1, 3))
def test_leading_zeros_in_an_ipv4_address_are_refused(addr, which, zeros):
    parts = str(addr).split(".")
    parts[which] = "0" * zeros + parts[which]
    assert_refused(rule_add("eth0", "drop", "--src", ".".join(parts)), "is not an IPv4 or IPv6 address")


@FAST
@given(addr=v4, plen=st.integers(96, 128))
def test_ipv4_mapped_ipv6_is_refused_with_the_ipv4_form(addr, plen):
    net = ipaddress.ip_network(f"::ffff:{addr}/{plen}", strict=False)
    line = assert_refused(rule_add("eth0", "drop", "--src", str(net)), "IPv4-mapped IPv6")
    assert f"write {net.network_address.ipv4_mapped}/{plen - 96}" in line


@FAST
@given(addr=st.one_of(v4, v6), tail=st.text(string.ascii_letters + string.punctuation + " ", min_size=1, max_size=8))
def test_an_address_with_trailing_text_is_refused(addr, tail):
    value = f"{addr}{tail}"
    try:
        ipaddress.ip_network(value.strip())
        return  # the tail made another valid value ("/8", " ")
    except ValueError:
        pass
    assert_refused(rule_add("eth0", "drop", "--dst", value))


# --- ports, numbers ----------------------------------------------------------------


@FAST
@given(port=st.one_of(st.integers(max_value=0), st.integers(min_value=65536)), option=st.sampled_from(["--sport", "--dport"]))
def test_ports_outside_1_to_65535_are_refused(port, option):
    r = rule_add("eth0", "drop", option, str(port))
    if port < 0:
        assert_refused(r)  # "-5" reads as an option, or as no port
    else:
        assert_refused(r, "from 1 to 65535", f"got {port}")


@FAST
@given(port=st.integers(1, 65535), junk=st.sampled_from(["0x{:x}", "{}abc", "{}.0", "+{}", "{}e0", "{}-", "-{}", "{} 1"]))
def test_ports_in_other_notations_are_refused(port, junk):
    assert_refused(rule_add("eth0", "drop", "--dport", junk.format(port)))


@FAST
@given(lo=st.integers(1, 65535), hi=st.integers(1, 65535))
def test_port_ranges_are_inclusive_and_never_reversed(no_kernel, lo, hi):
    no_kernel.clear()
    r = rule_add("eth0", "drop", "--sport", f"{lo}-{hi}")
    if hi < lo:
        assert_refused(r, "reversed", f"write {hi}-{lo}")
    else:
        assert r.exit_code == 0 and no_kernel[0][2].sport == (lo, hi)


@FAST
@given(option=st.sampled_from(["--vlan", "--icmp-type", "--priority"]), value=st.integers(-10**9, 10**9))
def test_numbers_out_of_range_are_refused(no_kernel, option, value):
    lo, hi = {"--vlan": (1, 4094), "--icmp-type": (0, 255), "--priority": (0, 65535)}[option]
    r = rule_add("eth0", "drop", option, str(value))
    if lo <= value <= hi:
        assert r.exit_code == 0
    else:
        assert_refused(r)


# --- options and interface names ------------------------------------------------------


@FAST
@given(name=st.from_regex(r"--[a-z][a-z-]{0,20}", fullmatch=True))
def test_unknown_options_are_refused(name):
    if name in OPTIONS or name in STEER_OPTIONS or name in ("--json", "--help"):
        return
    assert_refused(rule_add("eth0", "drop", name, "1"), "No such option")


@FAST
@given(name=st.text(min_size=16, max_size=40).filter(lambda n: "\x00" not in n))
def test_interface_names_too_long_are_refused(name):
    for command in (["rule", "add", "--", name, "drop"], ["attach", "--", name], ["detach", "--", name],
                    ["stats", "--", name]):
        r = runner.invoke(cli, command)
        if len(name.encode(errors="surrogateescape")) > 15:
            assert_refused(r, "at most 15")


@FAST
@given(head=st.text(string.ascii_letters, max_size=6), tail=st.text(string.ascii_letters, max_size=6),
       bad=st.sampled_from(["/", ":", " ", "\t", "\n"]))
def test_interface_names_with_slashes_or_spaces_are_refused(head, tail, bad):
    name = head + bad + tail
    if len(name.encode()) > 15:
        return
    assert_refused(runner.invoke(cli, ["rule", "add", name, "drop", "--proto", "udp"]), "not a valid interface name")


# --- configuration files ---------------------------------------------------------------

RULE_VALUES = st.one_of(st.text(max_size=30), st.integers(-10**6, 10**6), st.booleans(), st.floats(allow_nan=False),
                        st.lists(st.integers(), max_size=3))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not isinstance(v, float) or v == v and abs(v) != float("inf") else "0"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in v) + '"'


@FAST
@given(rules=st.lists(st.dictionaries(st.sampled_from(["action", "priority", *MATCH_KEYS, "colour"]), RULE_VALUES,
                                      max_size=5), max_size=5),
       name=st.sampled_from(["eth0", '"eth0.100"', '"a/b"', '"x"', '"' + "y" * 16 + '"']))
def test_any_rule_table_in_a_file_is_read_or_refused_with_its_line(rules, name):
    body = ",\n".join("  { " + ", ".join(f"{k} = {toml_value(v)}" for k, v in r.items()) + " }" for r in rules)
    text = f"[interfaces.{name}]\nrules = [\n{body}\n]\n"
    try:
        parse(text, "x.toml")
    except BadInput as exc:
        assert str(exc).startswith("x.toml:") and "\n" not in str(exc), str(exc)


@FAST
@given(raw=st.binary(max_size=300))
@example(raw=b"\xef\xbb\xbf[interfaces.eth0]\n")  # a UTF-8 byte-order mark
@example(raw=b"[interfaces.eth0]\nrules = [ { action = \"drop\", src = \"10.0.0.0/8\" } ]\x00\n")
def test_any_bytes_in_a_file_are_read_or_refused_in_one_line(tmp_path_factory, raw):
    f = tmp_path_factory.mktemp("raw") / "x.toml"
    f.write_bytes(raw)
    os.chmod(f, 0o600)
    try:
        load(str(f))
    except BadInput as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(f)), str(exc)


def apply_refused(path: str, *fragments: str) -> str:
    return assert_refused(runner.invoke(cli, ["apply", path, "--dry-run"]), *fragments)


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    f = tmp_path / "huge.toml"
    with open(f, "wb") as out:
        out.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    os.chmod(f, 0o600)
    apply_refused(str(f), "larger than 67,108,864 bytes")


def test_a_file_that_is_not_a_regular_file_is_refused(tmp_path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo, 0o600)
    apply_refused(str(fifo), "is not a regular file")  # never opened: a FIFO would block
    apply_refused("/dev/zero", "is not a regular file")


def test_cli_file_errors_are_one_line_with_exit_2(tmp_path):
    apply_refused(str(tmp_path / "missing.toml"), "no such file")
    apply_refused(str(tmp_path), "is a directory")
    f = tmp_path / "x.toml"
    f.write_text("[interfaces.eth0]\nrules = [ { action = \"drop\", dport = 0 } ]\n")
    os.chmod(f, 0o600)
    apply_refused(str(f), f"{f}:2: dport must be from 1 to 65535")
    f.write_bytes(b"[interfaces.eth0]\r\nrules = [\r\n { action = \"drop\", src = \"10.0.0.1/8\" },\r\n]\r\n")
    apply_refused(str(f), f"{f}:3: src 10.0.0.1/8 has host bits set")


def test_more_rules_than_the_maps_hold_are_refused_with_the_line_of_the_first_too_many():
    plain = "\n".join(f'  {{ action = "drop", src = "10.{i >> 8 & 255}.{i & 255}.{(i >> 16) * 16}/28" }},'
                      for i in range(contract.MAX_RULES + 1))
    with pytest.raises(BadInput) as err:
        parse(f"[interfaces.eth0]\nrules = [\n{plain}\n]\n")
    assert str(err.value) == (f"xdpctl.toml:{contract.MAX_RULES + 3}: more than 131,072 rules for eth0, "
                              "the most xdpctl holds per interface")


# --- interface names the kernel accepts, through export and back ----------------------

# dev_valid_name: 1 to 15 bytes, none of them '/', ':', NUL or what the kernel's
# isspace() calls space (including Latin-1's no-break space, byte 0xa0).
KERNEL_REFUSES = set(b"/: \t\n\v\f\r\xa0\0")


def kernel_accepts(name: str) -> bool:
    raw = name.encode()
    return 0 < len(raw) <= 15 and raw not in (b".", b"..") and not KERNEL_REFUSES & set(raw)


KERNEL_NAMES = st.text(st.one_of(st.characters(max_codepoint=0x7f), st.characters(blacklist_categories=("Cs",))),
                       min_size=1, max_size=15).filter(kernel_accepts)


@FAST
@given(name=KERNEL_NAMES)
@example(name="\x1b[31mX")  # an escape sequence: stripped on stdout, the file named interface "X"
@example(name="eth0\x7f")
@example(name='a"b\\c')
@example(name="\x1c")  # a separator Python calls space, the kernel does not
def test_a_name_the_kernel_accepts_round_trips_through_export(monkeypatch, tmp_path_factory, name):
    """export wrote control characters raw: on stdout click stripped an
    escape sequence, so the file named another interface; with -o the file
    was not TOML. Every name the kernel accepts must come back exactly."""
    import xdpctl.lifecycle.apply
    from xdpctl import validate
    from xdpctl.rules.config_file import dump

    assert validate.ifname(name) == name
    monkeypatch.setattr(xdpctl.lifecycle.apply, "export",
                        lambda app, ifaces=(): dump([(name, "native", "deny", False, [])]))
    r = runner.invoke(cli, ["export"])
    assert r.exit_code == 0, r.output
    assert list(parse(r.stdout, "stdout.toml").interfaces) == [name]
    out = tmp_path_factory.mktemp("export") / "x.toml"
    r = runner.invoke(cli, ["export", "-o", str(out)])
    assert r.exit_code == 0, r.output
    back = load(str(out)).interfaces
    assert list(back) == [name] and back[name].policy == "deny"


def test_a_name_that_is_not_utf8_is_refused_by_export_in_one_line(monkeypatch):
    import xdpctl.lifecycle.apply
    from xdpctl.rules.config_file import dump

    name = b"\xff\xfe".decode(errors="surrogateescape")  # as argv and netlink hand such a name over
    monkeypatch.setattr(xdpctl.lifecycle.apply, "export",
                        lambda app, ifaces=(): dump([(name, "native", "deny", False, [])]))
    assert_refused(runner.invoke(cli, ["export"]), "'\\xff\\xfe' is not UTF-8")


# --- IPv6 zones ------------------------------------------------------------------------

ZONES = st.one_of(st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,14}", fullmatch=True), st.integers(0, 2**32 - 1).map(str))


@FAST
@given(addr=st.ip_addresses(v=6), plen=st.integers(0, 128), zone=ZONES, key=st.sampled_from(["src", "dst"]))
@example(addr=ipaddress.IPv6Address("fe80::1"), plen=128, zone="eth0", key="src")
def test_an_ipv6_zone_is_refused_not_kept_beside_the_same_address(no_kernel, addr, plen, zone, key):
    """fe80::1%eth0 and fe80::1 were two rules (Python's equality keeps the
    zone) that match the same frames, and the exported file, holding both
    as fe80::1, was then refused as a duplicate."""
    net = ipaddress.IPv6Network((int(addr), plen), strict=False)
    text = f"{net.network_address}%{zone}" + ("" if plen == 128 else f"/{plen}")
    no_kernel.clear()
    line = assert_refused(rule_add("eth0", "drop", f"--{key}", text), f"--{key} {text} names a zone (%{zone})")
    assert no_kernel == [] and "write " in line
    file_text = (f'[interfaces.eth0]\nrules = [\n  {{ action = "drop", {key} = "{text}" }},\n'
                 f'  {{ action = "drop", {key} = "{net}" }},\n]\n')
    with pytest.raises(BadInput, match=rf"^x.toml:3: {key} .* names a zone"):
        parse(file_text, "x.toml")


# --- the shape of a file: nesting, and more rules than an interface holds --------------


@FAST
@given(depth=st.integers(17, 3000), opener=st.sampled_from(["[", "{ a = "]),
       where=st.sampled_from(["rules", "mode", "top"]))
@example(depth=2000, opener="[", where="rules")
@example(depth=500, opener="{ a = ", where="top")
def test_a_deeply_nested_file_is_refused_with_its_line(depth, opener, where):
    """tomllib reads nesting by recursion: a file nested deep enough was a
    RecursionError, an internal error (exit 70)."""
    closer = "]" if opener == "[" else " }"
    value = opener * depth + "1" + closer * depth
    text = "x = " + value + "\n" if where == "top" else f"[interfaces.eth0]\n{where} = {value}\n"
    with pytest.raises(BadInput) as err:
        parse(text, "deep.toml")
    line = 1 if where == "top" else 2
    assert str(err.value) == f"deep.toml:{line}: values nested more than 16 deep; an xdpctl.toml nests 4 at most"


def test_brackets_in_strings_and_comments_are_not_nesting():
    deep = "[" * 40
    text = (f'# {deep}\n[interfaces."e{{[0"]  # {deep}\npolicy = "allow"\nrules = [\n'
            f'  {{ action = "drop", src = "10.0.0.0/8" }},  # {deep}\n]\n'
            f'[interfaces.eth1]\nmode = \'\'\'{deep}\'\'\'\n')
    with pytest.raises(BadInput, match=r"^x.toml:8: mode '\[\[\[\[.*' is not one of"):
        parse(text, "x.toml")


def many_rules(form: str, n: int) -> str:
    rule = 'action = "drop", src = "10.{a}.{b}.{c}/32"'
    ips = ((i >> 16 & 255, i >> 8 & 255, i & 255) for i in range(n))
    if form == "inline":
        return "[interfaces.eth0]\nrules = [\n" + "".join(
            "  { " + rule.format(a=a, b=b, c=c) + " },\n" for a, b, c in ips) + "]\n"
    if form == "dotted":
        return "[interfaces]\neth0.rules = [\n" + "".join(
            "  { " + rule.format(a=a, b=b, c=c) + " },\n" for a, b, c in ips) + "]\n"
    return "".join("[[interfaces.eth0.rules]]\n" + rule.format(a=a, b=b, c=c).replace(", ", "\n") + "\n"
                   for a, b, c in ips)


@pytest.mark.parametrize("form, first_too_many", [("inline", contract.MAX_RULES + 3),
                                                  ("dotted", contract.MAX_RULES + 3),
                                                  ("tables", 3 * contract.MAX_RULES + 1)])
def test_more_rules_than_an_interface_holds_are_refused_before_the_file_is_parsed(monkeypatch, form,
                                                                                  first_too_many):
    import xdpctl.rules.config_file

    def never(text):
        raise AssertionError("tomllib read a file that holds more rules than xdpctl takes")

    monkeypatch.setattr(xdpctl.rules.config_file.tomllib, "loads", never)
    with pytest.raises(BadInput) as err:
        parse(many_rules(form, contract.MAX_RULES + 1), "x.toml")
    assert str(err.value) == (f"x.toml:{first_too_many}: more than 131,072 rules for eth0, "
                              "the most xdpctl holds per interface")


def test_a_million_rules_are_refused_quickly_in_little_memory(tmp_path):
    """Refused correctly, but after 68 s and 1.6 GB: now within a time and
    an address space far below that (the file itself is 45 MB)."""
    import subprocess
    import sys

    f = tmp_path / "million.toml"
    f.write_text(many_rules("inline", 1_000_000))
    f.chmod(0o600)

    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    r = subprocess.run([sys.executable, "-m", "xdpctl", "apply", "--dry-run", str(f)], capture_output=True,
                       text=True, timeout=30, preexec_fn=limit)
    assert r.returncode == 2, r.stderr
    assert r.stderr == (f"xdpctl: error: {f}:{contract.MAX_RULES + 3}: more than 131,072 rules for eth0, "
                        "the most xdpctl holds per interface\n")


@FAST
@given(seed=st.integers(0, 2**32), n=st.integers(0, 40), names=st.lists(KERNEL_NAMES, min_size=1, max_size=3,
                                                                         unique=True))
def test_the_shape_check_passes_every_file_export_writes(seed, n, names):
    """The scan before tomllib refuses nothing a valid file holds: every
    file dump() writes (any names, any rules) reads back whole."""
    import random

    from rulegen import random_rules
    from xdpctl.rules.config_file import dump
    from xdpctl.rules.model import sort_rules

    rng = random.Random(seed)
    entries = []
    for name in names:
        rules = list({r.identity: r for r in random_rules(rng, n)}.values())
        entries.append((name, "native", "allow", False, sort_rules(rules)))
    back = parse(dump(entries), "x.toml")
    assert [(name, len(back.interfaces[name].rules)) for name in names] == [(e[0], len(e[4])) for e in entries]


# --- rate limits ----------------------------------------------------------------------

LIMIT_OPTIONS = ["--over", "--burst", "--per", "--table", "--ceiling", "--block"]


@FAST
@given(given_options=st.lists(st.sampled_from(LIMIT_OPTIONS[1:]), unique=True, max_size=3),
       over=st.sampled_from([None, "1000/s", "20mbit/s", "7/min"]), value=st.text(max_size=30))
@example(given_options=["--per"], over="1000/s", value="src/33")
@example(given_options=["--block"], over="1000/s", value="99999999999999999999d")
@example(given_options=["--burst"], over="1000/s", value="99999999999999999999")
@example(given_options=["--ceiling"], over="1000/s", value="none")
def test_any_limit_option_is_accepted_or_refused_in_one_line(no_kernel, given_options, over, value):
    """Whatever --burst, --per, --table, --ceiling and --block hold, with or
    without --over: a limit that reads back as given, or one line and
    nothing recorded."""
    from xdpctl.rules.model import parse_limit

    no_kernel.clear()
    LIMITS.clear()
    args = [x for o in given_options for x in (o, value)] + (["--over", over] if over else [])
    r = rule_add("eth0", "drop", *args)
    assert "Traceback" not in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    if r.exit_code:
        assert_refused(r)
        assert no_kernel == []
        return
    ((_, _, match, _, _),) = no_kernel
    (limit,) = LIMITS
    if over is None:  # a plain rule: no limit option came without --over
        assert limit is None and not given_options
        return
    assert parse_limit(limit.describe(), match) == limit
