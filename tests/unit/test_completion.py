"""Shell completion through click: subcommands, interface names, rule ids,
the scripts `xdpctl completion SHELL` prints, and that a Tab stays cheap
(no BCC, scapy, pyroute2 or rich) and never fails."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import stat
import subprocess
import sys

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from xdpctl.cli import completion_sources
from xdpctl.datapath import contract
from xdpctl.cli import cli
from xdpctl.cli.completion import COMPLETE_VAR, PROG_NAME
from xdpctl.rules.model import ACTIONS, Match, Rule

runner = CliRunner()


def complete(args: list[str], incomplete: str = "") -> list[str]:
    return [item.value for item in completions(args, incomplete)]


def completions(args: list[str], incomplete: str = ""):
    return ShellComplete(cli, {}, PROG_NAME, COMPLETE_VAR).get_completions(args, incomplete)


def test_subcommands_complete():
    assert complete([], "st") == ["stats", "status"]
    assert {"attach", "detach", "rule", "lab", "completion"} <= set(complete([], ""))
    assert complete(["rule"], "") == ["add", "del", "list"]
    assert complete(["lab"], "") == ["down", "list", "up"]
    assert complete(["completion"], "") == ["bash", "zsh", "fish"]
    assert complete(["attach", "eth0"], "--dr") == ["--drop-non-ip"]
    assert complete([], "--ne") == ["--netns"]


@pytest.fixture
def fake_interfaces(tmp_path, monkeypatch):
    for name in ("eth0", "eth1", "xl-demo", "wg0"):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(completion_sources, "SYS_CLASS_NET", str(tmp_path))
    return ["eth0", "eth1", "wg0", "xl-demo"]


def test_interface_names_complete_wherever_an_iface_is_taken(fake_interfaces):
    for args in (["attach"], ["detach"], ["stats"], ["stats", "eth0"], ["rule", "add"], ["rule", "del"],
                 ["rule", "list"]):
        assert complete(args) == fake_interfaces, args
    assert complete(["attach"], "et") == ["eth0", "eth1"]
    assert complete(["detach"], "xl") == ["xl-demo"]
    assert complete(["detach"], "nope") == []


def test_interface_names_are_this_machines():
    assert complete(["attach"]) == sorted(os.listdir("/sys/class/net"))
    assert "lo" in complete(["attach"], "l")


def test_an_unknown_netns_offers_nothing_and_raises_nothing(fake_interfaces):
    assert complete(["--netns", "xdpctl-no-such-ns", "attach"]) == []
    assert complete(["--netns", "", "attach"]) == []  # refused by the command: not the host's names
    assert complete(["--netns", "../../etc", "attach"]) == []
    assert complete(["--netns", "xdpctl-no-such-ns", "rule", "del", "lo"]) == []
    assert complete(["gen", "--netns", "xdpctl-no-such-ns", "--iface"]) == []  # gen's own --netns


def test_gen_iface_completes_in_the_root_namespace_without_netns(fake_interfaces):
    assert complete(["gen", "--iface"]) == fake_interfaces


def rule(id_, action, priority=contract.PRIORITY_DEFAULT, seq=None, **match) -> Rule:
    return Rule(ACTIONS[action], Match(**match), priority, priority != contract.PRIORITY_DEFAULT, id_,
                seq if seq is not None else id_, id_ - 1)


@pytest.fixture
def recorded(monkeypatch):
    """A stubbed state source (reading the real pins needs root)."""
    calls = []
    rules = [rule(2, "pass", priority=5, proto=6),
             rule(1, "drop", src=ipaddress.ip_network("203.0.113.0/24"), proto=17, dport=(53, 53)),
             rule(12, "drop", dst=ipaddress.ip_network("10.0.0.0/8"))]

    def recorded_rules(ifname, netns=None):
        calls.append((ifname, netns))
        return rules

    monkeypatch.setattr(completion_sources, "recorded_rules", recorded_rules)
    return calls


def test_rule_ids_complete_with_what_each_rule_does(recorded):
    items = completions(["rule", "del", "eth0"])
    assert [i.value for i in items] == ["2", "1", "12"]  # as recorded_rules orders them
    assert items[0].help == "pass proto tcp (priority 5)"
    assert items[1].help == "drop src 203.0.113.0/24 proto udp dport 53 (priority 1000)"
    assert complete(["rule", "del", "eth0"], "1") == ["1", "12"]
    assert complete(["--netns", "lab-ns", "rule", "del", "xl-demo"], "") == ["2", "1", "12"]
    assert recorded[-1] == ("xl-demo", "lab-ns")
    assert complete(["rule", "del", "eth0", "2"]) == []  # ID is the last argument


def test_recorded_rules_without_state_is_empty(tmp_path):
    assert completion_sources.recorded_rules("lo", state_root=str(tmp_path)) == []
    assert completion_sources.recorded_rules("xdpctl-no-such-if", state_root=str(tmp_path)) == []
    assert completion_sources.recorded_rules("lo", state_root="/nonexistent/xdpctl") == []


def test_recorded_rules_never_raises_on_unreadable_state(tmp_path):
    """A meta that is not a BPF map (or a pin that cannot be opened without
    root) ends in an error deep down; completion offers nothing instead."""
    ino = os.stat("/proc/thread-self/ns/net").st_ino
    att = tmp_path / f"ns{ino}" / f"if{socket.if_nametoindex('lo')}"
    att.mkdir(parents=True)
    (att / contract.PIN_META).write_bytes(b"not a map")
    assert completion_sources.recorded_rules("lo", state_root=str(tmp_path)) == []
    att.chmod(0)
    try:
        assert completion_sources.recorded_rules("lo", state_root=str(tmp_path)) == []
    finally:
        att.chmod(stat.S_IRWXU)


# --- the real entry point, in a fresh process ---------------------------------

PROBE = """
import atexit, sys
def report():
    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'bcc', 'scapy', 'pyroute2', 'rich'})
    sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')
atexit.register(report)
from xdpctl.cli import main
main()
"""


def tab(words: str, shell: str = "bash") -> subprocess.CompletedProcess:
    """What the shell runs on Tab: xdpctl with click's variables set."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    env = {**os.environ, COMPLETE_VAR: f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          timeout=60, cwd="/")


def test_a_tab_runs_the_real_entry_point_without_heavy_imports():
    r = tab("xdpctl st")
    assert (r.returncode, r.stdout) == (0, "plain,stats\nplain,status\n"), r.stderr
    assert "HEAVY=\n" in r.stderr
    r = tab("xdpctl detach ")
    assert r.stdout.splitlines() == [f"plain,{n}" for n in sorted(os.listdir("/sys/class/net"))]
    assert "HEAVY=\n" in r.stderr
    r = tab("xdpctl rule del lo ")  # reads xdpctl's state (nothing, or no permission)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "HEAVY=\n" in r.stderr
    r = tab("xdpctl --netns xdpctl-no-such-ns attach ")
    assert r.returncode == 0 and r.stdout.strip() == "" and "HEAVY=\n" in r.stderr


# --- the scripts to source ----------------------------------------------------


def test_completion_prints_the_script_of_each_shell():
    for shell, marker in (("bash", "complete -o nosort -F _xdpctl_completion xdpctl"),
                          ("zsh", "#compdef xdpctl"), ("fish", "complete --no-files --command xdpctl")):
        result = runner.invoke(cli, ["completion", shell])
        assert result.exit_code == 0, result.output
        assert f"{COMPLETE_VAR}={shell}_complete" in result.stdout
        assert marker in result.stdout
        assert result.stderr == ""


def test_completion_rejects_other_shells_in_one_line():
    result = runner.invoke(cli, ["completion", "tcsh"])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("xdpctl: error: ") and "tcsh" in line


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_bash_script_completes_in_bash(tmp_path):
    """Source what `xdpctl completion bash` prints into a real bash, and press Tab."""
    script = runner.invoke(cli, ["completion", "bash"]).stdout
    wrapper = tmp_path / "xdpctl"  # the name the script calls, running this checkout
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m xdpctl "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "completion.bash").write_text(script)
    program = ('source completion.bash; COMP_WORDS=(xdpctl rule d); COMP_CWORD=2; '
               '_xdpctl_completion xdpctl; printf "%s\\n" "${COMPREPLY[@]}"; '
               'COMP_WORDS=(xdpctl attach l); COMP_CWORD=2; COMPREPLY=(); '
               '_xdpctl_completion xdpctl; printf "%s\\n" "${COMPREPLY[@]}"')
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ.get('PATH', '')}"}
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    expected = ["del"] + [n for n in sorted(os.listdir("/sys/class/net")) if n.startswith("l")]
    assert r.stdout.splitlines() == expected
