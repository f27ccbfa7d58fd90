"""xdpctl.service: the shipped unit verifies and keeps XDP attach possible;
`xdpctl service install --root DIR` writes and enables it there, and puts
everything back when it fails; the stop hook detaches only when told to.
No root, no systemd running: everything happens under a temporary --root."""

from __future__ import annotations

import configparser
import fnmatch
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from xdpctl.lifecycle import service
from xdpctl.cli.app import App
from xdpctl.cli import cli
from xdpctl.errors import BadInput, NotManaged

runner = CliRunner()
UNIT_PATH = "etc/systemd/system/xdpctl.service"
WANTS_LINK = "etc/systemd/system/multi-user.target.wants/xdpctl.service"
CAPS = {"CAP_BPF", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_PERFMON"}


def run(*args, env=None):
    return runner.invoke(cli, list(args), obj=App(), env=env)


def one_line_error(result, code, *fragments):
    assert result.exit_code == code, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xdpctl: error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def parse(text: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True, comment_prefixes=("#", ";"))
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(text)
    return unit


@pytest.fixture
def fake_xdpctl(tmp_path):
    path = tmp_path / "bin" / "xdpctl"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def root(tmp_path):
    """A staging tree with an xdpctl at /usr/bin/xdpctl."""
    path = tmp_path / "root"
    exe = path / "usr" / "bin" / "xdpctl"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return path


XDPCTL = "/usr/bin/xdpctl"  # in root


def test_unit_runs_apply_once_after_the_network_is_configured():
    unit = parse(service.render("/usr/bin/xdpctl"))
    svc, head = unit["Service"], unit["Unit"]
    assert svc["Type"] == "oneshot" and svc["RemainAfterExit"] == "yes"
    assert svc["ExecStart"] == "/usr/bin/xdpctl apply /etc/xdpctl/xdpctl.toml"
    assert svc["ExecReload"] == svc["ExecStart"]
    assert svc["ExecStop"] == "/usr/bin/xdpctl service stop-hook /etc/xdpctl/xdpctl.toml"
    assert svc["EnvironmentFile"] == "-" + service.ENV_FILE
    assert head["ConditionPathExists"] == service.CONFIG
    assert "network-online.target" in head["After"] and "network-online.target" in head["Wants"]
    assert head["AssertPathIsMountPoint"] == "/sys/fs/bpf"
    assert unit["Install"]["WantedBy"] == service.WANTED_BY
    assert service.PLACEHOLDER not in service.render("/usr/bin/xdpctl")


def test_hardening_keeps_what_xdp_attach_needs():
    svc = parse(service.render("/usr/bin/xdpctl"))["Service"]
    assert set(svc["CapabilityBoundingSet"].split()) == CAPS
    assert svc["NoNewPrivileges"] == "yes" and svc["PrivateTmp"] == "yes"
    assert svc["ProtectHome"] == "read-only"  # a venv in a home must still run
    # Each of these breaks attaching: /sys (bpffs) read-only, /lib/modules
    # (BCC's kernel headers) hidden, the interfaces hidden, and not root,
    # who owns the state on bpffs and the configuration file.
    for breaks in ("ProtectKernelTunables", "ProtectKernelModules", "PrivateNetwork", "DynamicUser"):
        assert breaks not in svc, breaks


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_rendered_unit_verifies(tmp_path, fake_xdpctl):
    for exe in (fake_xdpctl, _with_space(tmp_path, fake_xdpctl)):
        unit = tmp_path / "xdpctl.service"
        unit.write_text(service.render(exe))
        proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        # Unknown keys and bad values are only warnings: none may name the unit.
        complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if "xdpctl.service" in line]
        assert complaints == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_verify_catches_a_bad_unit(tmp_path):
    """The verify test above can fail: a missing executable is an error."""
    unit = tmp_path / "xdpctl.service"
    unit.write_text(service.render(str(tmp_path / "no-such-xdpctl")))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert proc.returncode != 0 and "no-such-xdpctl" in proc.stderr


def _with_space(tmp_path, exe: str) -> str:
    spaced = tmp_path / "my tools" / "xdpctl"
    spaced.parent.mkdir()
    shutil.copy(exe, spaced)
    return str(spaced)


# --- xdpctl-exporter.service ----------------------------------------------------------

EXPORTER_PATH = "etc/systemd/system/xdpctl-exporter.service"
EXPORTER_WANTS = "etc/systemd/system/multi-user.target.wants/xdpctl-exporter.service"


def test_exporter_unit_serves_until_stopped_and_restarts_after_a_crash():
    unit = parse(service.render("/usr/bin/xdpctl", service.EXPORTER_UNIT))
    svc, head = unit["Service"], unit["Unit"]
    assert svc["Type"] == "exec" and "RemainAfterExit" not in svc
    assert svc["ExecStart"] == "/usr/bin/xdpctl exporter"
    assert svc["EnvironmentFile"] == "-" + service.EXPORTER_ENV_FILE
    assert svc["Restart"] == "on-failure"
    assert svc["RestartPreventExitStatus"] == "2"  # bad input does not mend itself
    assert "ExecStop" not in svc  # SIGTERM: the exporter stops cleanly on it
    assert head["AssertPathIsMountPoint"] == "/sys/fs/bpf"
    assert unit["Install"]["WantedBy"] == service.WANTED_BY


def test_exporter_unit_has_the_apply_unit_s_hardening_and_only_cap_bpf():
    apply_unit = parse(service.render("/usr/bin/xdpctl"))["Service"]
    svc = parse(service.render("/usr/bin/xdpctl", service.EXPORTER_UNIT))["Service"]
    assert svc["CapabilityBoundingSet"].split() == ["CAP_BPF"]
    assert "AmbientCapabilities" not in svc
    kept = {k: v for k, v in apply_unit.items()
            if k.startswith(("Protect", "Private", "Restrict", "Lock", "NoNew"))}
    assert len(kept) >= 9
    for key, value in kept.items():
        if key == "ProtectSystem":
            assert svc[key] == "strict"  # it writes nothing: stricter than the apply unit's "full"
        else:
            assert svc[key] == value, key
    for more in ("ProtectKernelTunables", "ProtectKernelModules", "PrivateDevices", "RestrictNamespaces"):
        assert svc[more] == "yes", more  # it only reads: what breaks attaching does not break it
    assert set(svc["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    for breaks in ("PrivateNetwork", "DynamicUser", "User"):
        assert breaks not in svc, breaks


def test_exporter_environment_file_sets_the_defaults():
    from xdpctl.cli.exporter import DEFAULT_LISTEN

    lines = [line for line in service.shipped_env(service.EXPORTER_UNIT).splitlines()
             if line and not line.startswith("#")]
    assert lines == [f"XDPCTL_EXPORTER_LISTEN={DEFAULT_LISTEN}", "XDPCTL_EXPORTER_RULE_METRICS=yes"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_rendered_exporter_unit_verifies(tmp_path, fake_xdpctl):
    unit = tmp_path / service.EXPORTER_UNIT
    unit.write_text(service.render(fake_xdpctl, service.EXPORTER_UNIT))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if service.EXPORTER_UNIT in line]
    assert complaints == []
    unit.write_text(service.render(fake_xdpctl, service.EXPORTER_UNIT).replace("Type=exec", "Type=sometimes"))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert any(service.EXPORTER_UNIT in line for line in (proc.stdout + proc.stderr).splitlines())


def test_install_exporter_no_enable_writes_both_units(root):
    result = run("service", "install", "--root", str(root), "--no-enable", "--xdpctl", XDPCTL, "--exporter")
    assert result.exit_code == 0, result.output
    assert (root / UNIT_PATH).read_text() == service.render(XDPCTL)
    assert (root / EXPORTER_PATH).read_text() == service.render(XDPCTL, service.EXPORTER_UNIT)
    assert stat.S_IMODE((root / EXPORTER_PATH).stat().st_mode) == 0o644
    env = root / "etc/default/xdpctl-exporter"
    assert env.read_text() == service.shipped_env(service.EXPORTER_UNIT)
    assert f"installed {root / EXPORTER_PATH}: runs {XDPCTL} exporter" in result.stdout
    assert "`systemctl enable xdpctl.service xdpctl-exporter.service`" in result.stdout
    env.write_text("XDPCTL_EXPORTER_LISTEN=0.0.0.0:9435\n")  # the administrator's choice stays
    assert run("service", "install", "--root", str(root), "--no-enable", "--xdpctl", XDPCTL,
               "--exporter").exit_code == 0
    assert env.read_text() == "XDPCTL_EXPORTER_LISTEN=0.0.0.0:9435\n"


def test_install_without_exporter_leaves_the_exporter_unit_alone(root):
    assert run("service", "install", "--root", str(root), "--no-enable", "--xdpctl", XDPCTL).exit_code == 0
    assert not (root / EXPORTER_PATH).exists() and not (root / "etc/default/xdpctl-exporter").exists()


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl is not installed")
def test_install_exporter_enables_both_and_uninstall_removes_both(root):
    result = run("service", "install", "--root", str(root), "--xdpctl", XDPCTL, "--exporter")
    assert result.exit_code == 0, result.output
    assert os.readlink(root / WANTS_LINK) == "/" + UNIT_PATH
    assert os.readlink(root / EXPORTER_WANTS) == "/" + EXPORTER_PATH
    assert "enabled xdpctl.service, xdpctl-exporter.service: they start at boot" in result.stdout
    result = run("service", "uninstall", "--root", str(root))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"removed {root / UNIT_PATH}", f"removed {root / EXPORTER_PATH}"]
    for gone in (WANTS_LINK, EXPORTER_WANTS, UNIT_PATH, EXPORTER_PATH):
        assert not os.path.lexists(root / gone), gone
    assert (root / "etc/default/xdpctl-exporter").exists()  # configuration stays


def test_uninstall_removes_an_exporter_unit_alone(root, no_systemctl):
    unit = root / EXPORTER_PATH
    unit.parent.mkdir(parents=True)
    unit.write_text(service.render(XDPCTL, service.EXPORTER_UNIT))
    result = run("service", "uninstall", "--root", str(root))
    assert result.exit_code == 0 and result.stdout == f"removed {unit}\n"
    assert not unit.exists()


def test_failed_exporter_install_puts_everything_back(root, no_systemctl):
    unit = root / EXPORTER_PATH
    unit.parent.mkdir(parents=True)
    unit.write_text("# an older exporter unit\n")
    unit.chmod(0o600)
    before = tree(root)
    result = run("service", "install", "--root", str(root), "--xdpctl", XDPCTL, "--exporter")
    one_line_error(result, 1, "systemctl is not installed", "nothing was installed")
    assert tree(root) == before


def test_exec_paths_are_quoted_or_refused():
    assert service.exec_path("/opt/xdpctl/bin/xdpctl") == "/opt/xdpctl/bin/xdpctl"
    assert service.exec_path("/opt/my tools/xdpctl") == '"/opt/my tools/xdpctl"'
    assert service.exec_path("/opt/100%/xdpctl") == "/opt/100%%/xdpctl"
    for bad in ('/opt/"x"/xdpctl', "/opt/x\\y/xdpctl", "/opt/x\ny/xdpctl"):
        with pytest.raises(BadInput, match="--xdpctl"):
            service.exec_path(bad)


def test_install_no_enable_writes_the_unit_with_the_given_xdpctl(root):
    result = run("service", "install", "--root", str(root), "--no-enable", "--xdpctl", XDPCTL)
    assert result.exit_code == 0, result.output
    unit = root / UNIT_PATH
    assert unit.read_text() == service.render(XDPCTL)
    assert parse(unit.read_text())["Service"]["ExecStart"] == f"{XDPCTL} apply /etc/xdpctl/xdpctl.toml"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert not os.path.lexists(root / WANTS_LINK)
    env = (root / "etc/default/xdpctl").read_text()
    assert "XDPCTL_DETACH_ON_STOP=no" in env.splitlines()
    assert "not enabled" in result.stdout
    assert "xdpctl.toml does not exist yet" in result.stderr


def test_install_defaults_to_the_running_xdpctl(root, fake_xdpctl, monkeypatch):
    monkeypatch.setattr(sys, "argv", [fake_xdpctl, "service", "install"])
    assert run("service", "install", "--root", str(root), "--no-enable").exit_code == 0
    assert f"ExecStart={fake_xdpctl} apply" in (root / UNIT_PATH).read_text()


def test_install_keeps_an_existing_environment_file(root):
    env = root / "etc/default/xdpctl"
    env.parent.mkdir(parents=True)
    env.write_text("XDPCTL_DETACH_ON_STOP=yes\n")
    assert run("service", "install", "--root", str(root), "--no-enable", "--xdpctl", XDPCTL).exit_code == 0
    assert env.read_text() == "XDPCTL_DETACH_ON_STOP=yes\n"


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl is not installed")
def test_install_enables_and_uninstall_removes(root):
    result = run("service", "install", "--root", str(root), "--xdpctl", XDPCTL)
    assert result.exit_code == 0, result.output
    link = root / WANTS_LINK
    assert os.readlink(link) == "/" + UNIT_PATH
    assert "enabled xdpctl.service" in result.stdout

    result = run("service", "uninstall", "--root", str(root))
    assert result.exit_code == 0, result.output
    assert not os.path.lexists(link) and not (root / UNIT_PATH).exists()
    assert (root / "etc/default/xdpctl").exists()  # configuration stays
    again = run("service", "uninstall", "--root", str(root))
    assert again.exit_code == 0 and "nothing to do" in again.stdout


def tree(top: Path) -> dict[str, tuple]:
    """Every entry under top: (kind, mode, bytes or link target)."""
    out = {}
    for entry in sorted(top.rglob("*")):
        st = entry.lstat()
        if entry.is_symlink():
            out[str(entry.relative_to(top))] = ("link", os.readlink(entry))
        elif entry.is_dir():
            out[str(entry.relative_to(top))] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            out[str(entry.relative_to(top))] = ("file", stat.S_IMODE(st.st_mode), entry.read_bytes())
    return out


@pytest.fixture
def no_systemctl(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # the install then fails at `systemctl enable`


def test_failed_enable_puts_everything_back(root, no_systemctl):
    """Exactly as it was: the older unit with its bytes and its mode, and no
    directory the failed install made (etc/default/ was left behind)."""
    unit = root / UNIT_PATH
    unit.parent.mkdir(parents=True)
    unit.write_text("# an older unit\n")
    unit.chmod(0o600)
    before = tree(root)
    result = run("service", "install", "--root", str(root), "--xdpctl", XDPCTL)
    one_line_error(result, 1, "systemctl is not installed", "nothing was installed", "--no-enable")
    assert tree(root) == before
    (root / "etc").chmod(0o755)
    shutil.rmtree(root / "etc")
    before = tree(root)
    one_line_error(run("service", "install", "--root", str(root), "--xdpctl", XDPCTL), 1, "systemctl")
    assert tree(root) == before  # not even etc/


# --- an attacker who can write in the staging tree ------------------------------------


TOOLS = {name: shutil.which(name) or f"/usr/bin/{name}" for name in ("setpriv", "mkdir", "ln")}


def as_attacker(*argv: str) -> None:
    """Run argv as nobody (the tests may run as root, or as nobody already)."""
    argv = (TOOLS[argv[0]], *argv[1:])
    if os.geteuid() == 0:
        argv = (TOOLS["setpriv"], "--reuid=65534", "--regid=65534", "--clear-groups", "--", *argv)
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@pytest.fixture
def shared_root(tmp_path):
    """A staging tree that others may write in (mode 1777 at every level
    an attacker needs), with an xdpctl at /usr/bin/xdpctl, and a file only
    its owner may read (a secret) outside it."""
    base = Path(tempfile.mkdtemp(prefix="xdpctl-shared-"))
    base.chmod(0o755)
    path = base / "root"
    exe = path / "usr" / "bin" / "xdpctl"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    path.chmod(0o1777)
    secret = base / "secret"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)
    try:
        yield path, secret
    finally:
        shutil.rmtree(base)


def test_install_reads_no_unit_through_a_link_and_copies_nothing_out(shared_root, no_systemctl):
    """A link planted at the unit's path was read through, and a failed
    install "put back" its target as a new 0644 file: a root-only file
    became world-readable. The link is now refused and left as it is."""
    root, secret = shared_root
    as_attacker("mkdir", "-p", str(root / "etc/systemd/system"))
    as_attacker("ln", "-s", str(secret), str(root / UNIT_PATH))
    before = tree(root)
    result = run("service", "install", "--root", str(root), "--xdpctl", XDPCTL)
    one_line_error(result, 1, f"{root / UNIT_PATH} is a symbolic link (to {secret})", "systemctl unmask")
    assert tree(root) == before
    assert not any(entry[-1] == secret.read_bytes() for entry in tree(root).values())
    assert secret.read_text() == "root's secret\n" and stat.S_IMODE(secret.stat().st_mode) == 0o600


@pytest.mark.parametrize("linked", ["etc", "etc/systemd", "etc/systemd/system", "etc/default"])
def test_install_writes_nothing_through_a_linked_directory(shared_root, tmp_path, linked):
    """DIR/etc -> /etc made `--root DIR` write the host's unit. Every
    directory below DIR is opened without following a link, and a link is
    refused before anything is written."""
    root, _ = shared_root
    outside = root.parent / "outside"
    outside.mkdir(mode=0o777)
    outside.chmod(0o777)
    as_attacker("mkdir", "-p", str(outside / "systemd/system"), str(outside / "default"),
                str(root / os.path.dirname(linked)))
    as_attacker("ln", "-s", str(outside / linked.partition("/")[2] if "/" in linked else outside),
                str(root / linked))
    before, outside_before = tree(root), tree(outside)
    result = run("service", "install", "--root", str(root), "--no-enable", "--xdpctl", XDPCTL)
    one_line_error(result, 1, f"{root / linked} is a symbolic link", "real directories")
    assert tree(outside) == outside_before
    assert tree(root) == before


def test_uninstall_removes_nothing_through_a_linked_directory(shared_root):
    root, _ = shared_root
    outside = root.parent / "outside"
    (outside / "systemd/system").mkdir(parents=True)
    (outside / "systemd/system/xdpctl.service").write_text("the host's unit\n")
    as_attacker("ln", "-s", str(outside), str(root / "etc"))
    result = run("service", "uninstall", "--root", str(root))
    one_line_error(result, 1, f"{root}/etc is a symbolic link")
    assert (outside / "systemd/system/xdpctl.service").read_text() == "the host's unit\n"


def test_uninstall_without_systemctl_removes_the_link(root, monkeypatch, tmp_path):
    assert run("service", "install", "--root", str(root), "--no-enable", "--xdpctl", XDPCTL).exit_code == 0
    link = root / WANTS_LINK
    link.parent.mkdir()
    link.symlink_to("/" + UNIT_PATH)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert run("service", "uninstall", "--root", str(root)).exit_code == 0
    assert not os.path.lexists(link) and not (root / UNIT_PATH).exists()


def test_install_errors_are_one_line(root, tmp_path, fake_xdpctl):
    one_line_error(run("service", "install", "--root", str(tmp_path / "nope")), 2, "--root", "no such directory")
    (root / "usr/bin/plain").write_text("")
    one_line_error(run("service", "install", "--root", str(root), "--xdpctl", "/usr/bin/plain"),
                   2, "no executable file there", str(root))
    # --xdpctl names a path on the installed system: one on this machine only is not enough.
    one_line_error(run("service", "install", "--root", str(root), "--xdpctl", fake_xdpctl),
                   2, "no executable file there")
    one_line_error(run("service", "install", "--root", str(root), "--xdpctl", "usr/bin/xdpctl"),
                   2, "absolute path")
    (root / "etc").write_text("a file where a directory must be")  # fails even as root
    one_line_error(run("service", "install", "--root", str(root), "--xdpctl", XDPCTL),
                   1, f"{root}/etc is not a directory")


def test_stop_hook_keeps_by_default_and_rejects_bad_values(tmp_path):
    config = tmp_path / "xdpctl.toml"  # never read when keeping
    result = run("service", "stop-hook", str(config), env={"XDPCTL_DETACH_ON_STOP": None})
    assert result.exit_code == 0 and "stay attached" in result.stdout
    result = run("service", "stop-hook", str(config), env={"XDPCTL_DETACH_ON_STOP": "no"})
    assert result.exit_code == 0 and "stay attached" in result.stdout
    one_line_error(run("service", "stop-hook", str(config), env={"XDPCTL_DETACH_ON_STOP": "maybe"}),
                   2, "XDPCTL_DETACH_ON_STOP")


def test_stop_hook_detaches_what_the_file_names(tmp_path, monkeypatch):
    import xdpctl.lifecycle.detach

    config = tmp_path / "xdpctl.toml"
    config.write_text("[interfaces.eth0]\n[interfaces.eth1]\npolicy = \"deny\"\n")
    config.chmod(0o600)
    calls = []

    def fake_detach(app, name):
        calls.append(name)
        if name == "eth1":
            raise NotManaged(name)
        return xdpctl.lifecycle.detach.DetachResult(name, 42)

    monkeypatch.setattr(xdpctl.lifecycle.detach, "detach", fake_detach)
    result = run("service", "stop-hook", str(config), env={"XDPCTL_DETACH_ON_STOP": "yes"})
    assert result.exit_code == 0, result.output
    assert calls == ["eth0", "eth1"]
    assert result.stdout.splitlines() == [
        "eth0: detached prog 42",
        "eth1: skipped: xdpctl manages no program on eth1; `xdpctl status` shows what is attached",
    ]


def test_the_unit_files_are_package_data():
    """They ship in the wheel: pyproject lists the package and covers each file."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    tool = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]
    assert "xdpctl.systemd" in tool["packages"]
    patterns = tool["package-data"]["xdpctl.systemd"]
    for shipped in service.SHIPPED.iterdir():
        assert any(fnmatch.fnmatch(shipped.name, p) for p in patterns), shipped.name
