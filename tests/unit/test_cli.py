"""Argument validation and error translation, with no root and no kernel:
every failure is one line on stderr, a non-zero exit, and no traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xdpctl.kernel import privileges
from xdpctl.cli.app import App
from xdpctl.cli import cli, main

runner = CliRunner()


def run(*args, obj=None):
    return runner.invoke(cli, list(args), obj=obj)


def assert_one_line_error(result, code, *fragments):
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xdpctl: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("name, why", [
    ("a" * 16, "16 bytes long"),
    ("ethé" * 4, "bytes long"),
    ("eth/0", "not a valid interface name"),
    ("eth 0", "not a valid interface name"),
    ("..", "not a valid interface name"),
    ("", "cannot be empty"),
])
def test_bad_interface_names(name, why):
    for cmd in ("attach", "detach", "stats"):
        assert_one_line_error(run(cmd, name), 2, why)


def test_bad_mode():
    assert_one_line_error(run("attach", "eth0", "--mode", "turbo"), 2, "--mode", "native")


def test_unknown_option_and_command():
    assert_one_line_error(run("attach", "eth0", "--drop-everything"), 2, "--drop-everything")
    assert_one_line_error(run("frobnicate"), 2, "frobnicate")


def test_bad_interval():
    assert_one_line_error(run("stats", "--watch", "--interval", "0"), 2, "--interval")
    assert_one_line_error(run("stats", "--watch", "--json"), 2, "--watch")


def test_missing_capabilities_are_named(monkeypatch):
    monkeypatch.setattr(privileges, "effective", lambda *a: set())
    assert_one_line_error(run("attach", "eth0"), 1, "CAP_BPF and CAP_NET_ADMIN")
    assert_one_line_error(run("detach", "eth0"), 1, "CAP_BPF and CAP_NET_ADMIN")
    monkeypatch.setattr(privileges, "effective", lambda *a: {privileges.CAP_BPF})
    assert_one_line_error(run("attach", "eth0"), 1, "needs CAP_NET_ADMIN")


def test_stats_needs_cap_bpf(monkeypatch):
    monkeypatch.setattr(privileges, "effective", lambda *a: {privileges.CAP_NET_ADMIN})
    assert_one_line_error(run("stats", "--json"), 1, "CAP_BPF")


def test_unknown_netns_is_one_line():
    assert_one_line_error(run("--netns", "xdpctl-no-such-ns", "status"), 2, "xdpctl-no-such-ns")


BLANK = st.text(alphabet=" \t\n\r\x0b\x0c", max_size=4)


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=BLANK)
def test_an_empty_or_blank_netns_is_refused_not_taken_for_the_host(monkeypatch, capsys, name):
    """`xdpctl --netns "$NS" attach eth0 --policy deny` with NS unset must not
    act on the root namespace: one line, exit 2, and nothing is called."""
    import xdpctl.lifecycle.attach
    from xdpctl.errors import BadInput

    calls = []
    monkeypatch.setattr(xdpctl.lifecycle.attach, "attach", lambda *a, **kw: calls.append(a))
    for args in (["--netns", name, "attach", "eth0", "--policy", "deny"],
                 ["gen", "--netns", name, "--iface", "eth0", "--count", "1"]):
        with pytest.raises(SystemExit) as exit_:
            main(args)  # the entry point: the root group's own options are parsed before invoke
        out, err = capsys.readouterr()
        assert exit_.value.code == 2 and out == "", (args, out, err)
        assert err.count("\n") == 1 and err.startswith("xdpctl: error: ") and "Traceback" not in err
        assert "--netns" in err and "names no network namespace" in err
    assert calls == []
    with pytest.raises(BadInput, match="names no network namespace"):
        App(netns=name)


def test_internal_errors_are_one_line_and_exit_70(monkeypatch):
    import xdpctl.observe.report

    def boom(app):
        raise RuntimeError("kaput")

    monkeypatch.setattr(xdpctl.observe.report, "status", boom)
    assert_one_line_error(run("status"), 70, "internal error", "kaput", "--verbose")
    verbose = run("-v", "status")
    assert "Traceback" in verbose.stderr and verbose.exit_code == 70


def test_ctrl_c_exits_130(monkeypatch):
    import xdpctl.observe.report

    def interrupted(app):
        raise KeyboardInterrupt

    monkeypatch.setattr(xdpctl.observe.report, "status", interrupted)
    result = run("status")
    assert result.exit_code == 130 and "Traceback" not in result.stderr


def test_ebpf_prints_the_compiled_source_and_flags():
    result = run("attach", "eth0", "--drop-non-ip", "--ebpf")
    assert result.exit_code == 0
    assert "-DXDPCTL_DROP_NON_IP" in result.stdout
    assert "-DXDPCTL_PIN_DIR=" in result.stdout
    for name in ("xdpctl_kern.c", "parse_kern.h", "xdpctl_kern_user.h"):
        assert f"---- {name} ----" in result.stdout
    plain = run("attach", "eth0", "--ebpf")
    assert "XDPCTL_DROP_NON_IP" not in plain.stdout.split("*/")[0]


def test_version_and_help():
    assert run("--version").stdout.startswith("xdpctl, version ")
    help_text = run("--help").stdout
    for cmd in ("attach", "detach", "stats", "status"):
        assert cmd in help_text


def test_app_is_injectable():
    app = App(netns=None)
    result = runner.invoke(cli, ["attach", "eth0", "--ebpf"], obj=app)
    assert result.exit_code == 0
