"""Issue 5, guarantees 11 and 12: xdpctl's state is private to root and works
with the least privilege (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON); a missing
capability is named and changes nothing. Every map xdpctl creates has a
fixed size, and a rule set past what the maps hold is refused.

Already covered elsewhere, not repeated here: attach with CAP_BPF or
CAP_NET_ADMIN dropped from a full set (test_errors.py); a file past the
general-rule limit is refused with its line (tests/unit/test_config_file.py).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from state_checks import (
    assert_nothing_left,
    attachment,
    check_consistent,
    local_snapshot,
    one_line_error,
    state_dir,
)
from xdpctl.datapath import contract
from xdpctl.traffic import frames
from xdpctl.datapath.layout import Layout
from xdpctl.traffic.predict import predict, rules_from_json
from xdpctl.datapath.program import FilterOptions
from xdpctl.lifecycle.state import STATE_ROOT

pytestmark = pytest.mark.kernel

LEAST = ("bpf", "net_admin", "perfmon")


def with_caps(klab, caps, *args: str, netns_flag: bool = False, umask: int | None = None):
    """xdpctl in the lab's host namespace holding only caps (still uid 0, so
    root's files stay its own). nsenter enters the namespace first: --netns
    would need CAP_SYS_ADMIN to setns."""
    keep = ",".join(f"+{c}" for c in caps)
    cmd = ["setpriv", "--inh-caps=-all", f"--bounding-set=-all{',' + keep if keep else ''}", "--",
           sys.executable, "-m", "xdpctl", *(["--netns", klab.lab.host_netns] if netns_flag else []), *args]
    if not netns_flag:
        cmd = ["nsenter", f"--net=/var/run/netns/{klab.lab.host_netns}", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/",
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


# --- 11. private state, least privilege -----------------------------------------


def test_state_is_root_only_whatever_the_umask(klab):
    r = with_caps(klab, LEAST, "attach", klab.iface, "--drop-non-ip", umask=0)
    assert r.returncode == 0, r.stderr
    r = with_caps(klab, (*LEAST, "sys_admin"), "rule", "add", klab.iface, "drop", "--proto", "udp", umask=0)
    assert r.returncode == 0, r.stderr
    att = attachment(klab)
    dirs = [STATE_ROOT, str(state_dir(klab)), str(att.path)]
    for d in dirs:
        st = os.stat(d)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, 0, 0), d
    pins = att.pins()
    assert {"prog", "meta", "counters", "config", "rules"} <= set(pins)
    for pin in pins:
        st = os.stat(att.pin(pin))
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 0, 0), pin


def test_least_privilege_attaches_counts_changes_rules_and_detaches(klab):
    """CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: a first attach, rule changes
    that only write maps, stats, status and detach. A change that compiles
    against maps already pinned (a replace, a new kind of rule) also needs
    CAP_SYS_ADMIN, because BCC reopens pinned maps by id; it says so before
    anything changes."""
    def least(*args):
        r = with_caps(klab, LEAST, *args)
        assert r.returncode == 0, (args, r.stderr)
        return r.stdout

    assert "attached to" in least("attach", klab.iface, "--drop-non-ip")
    before = local_snapshot(klab)
    for args in (["rule", "add", klab.iface, "drop", "--proto", "udp", "--dport", "9"],
                 ["attach", klab.iface]):
        one_line_error(with_caps(klab, LEAST, *args), 1,
                       f"compiling a program for {klab.iface} against its pinned maps "
                       "(BCC reopens its pinned maps by id) needs CAP_SYS_ADMIN")
        assert local_snapshot(klab) == before, args
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp", "--dport", "9")  # as root: a compile
    assert "maps only" in least("rule", "add", klab.iface, "drop", "--proto", "udp", "--dport", "53")
    assert "deleted rule 2" in least("rule", "del", klab.iface, "2")
    mix = frames.build("mix", klab.lab.endpoints())
    klab.send(mix)
    klab.wait_for_total(len(mix))
    (entry,) = json.loads(least("stats", klab.iface, "--json"))["interfaces"]
    assert entry["managed"] is True and entry["prog_name"] == contract.PROG_NAME
    want, hits = predict(mix, [1] * len(mix), rules_from_json(entry["rules"]), FilterOptions(drop_non_ip=True))
    assert entry["counters"] == want and {r["id"]: r["hits"] for r in entry["rules"]} == hits
    assert [r["id"] for r in entry["rules"]] == [1] and hits[1]["packets"] > 0
    (status,) = json.loads(least("status", "--json"))["interfaces"]
    assert status["prog_id"] == entry["prog_id"]
    found = check_consistent(klab)
    assert "detached" in least("detach", klab.iface)
    assert_nothing_left(klab, {found["prog_id"]}, found["map_ids"])


def test_without_net_admin_the_capability_is_named_and_nothing_changes(klab):
    no_net = ("bpf", "perfmon")
    before = local_snapshot(klab)
    one_line_error(with_caps(klab, no_net, "attach", klab.iface), 1, f"attaching XDP to {klab.iface} needs CAP_NET_ADMIN")
    assert local_snapshot(klab) == before and before["tree"] == []

    klab.xdpctl("attach", klab.iface)  # as root
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp")
    before = local_snapshot(klab)
    for args, action in ((["attach", klab.iface, "--drop-non-ip"], f"attaching XDP to {klab.iface}"),
                         (["detach", klab.iface], f"detaching XDP from {klab.iface}"),
                         (["rule", "add", klab.iface, "drop", "--proto", "tcp"], f"changing the rules of {klab.iface}"),
                         (["rule", "del", klab.iface, "1"], f"changing the rules of {klab.iface}")):
        one_line_error(with_caps(klab, no_net, *args), 1, f"{action} needs CAP_NET_ADMIN")
        assert local_snapshot(klab) == before, args
    # Reading needs CAP_BPF only.
    r = with_caps(klab, no_net, "stats", klab.iface, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["interfaces"][0]["managed"] is True
    one_line_error(with_caps(klab, ("net_admin", "perfmon"), "stats", klab.iface), 1, "CAP_BPF")
    # Entering a namespace by name (setns) is CAP_SYS_ADMIN's.
    one_line_error(with_caps(klab, LEAST, "stats", klab.iface, netns_flag=True), 1,
                   f"entering network namespace {klab.lab.host_netns} needs CAP_SYS_ADMIN")
    assert local_snapshot(klab) == before


# --- 12. bounded maps -------------------------------------------------------------


def map_show(path: str) -> dict:
    out = subprocess.run(["bpftool", "-j", "map", "show", "pinned", path], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_every_map_has_a_fixed_size(klab):
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp", "--dport", "53")
    klab.xdpctl("stats", "--reset")
    att = attachment(klab)
    layout = Layout.unpack(att.read_meta().layout)
    want = {
        "counters": ("percpu_array", len(contract.CLASSES)),
        "meta": ("array", 1),
        "config": ("array", 1),
        "rules": ("hash", 2 * contract.MAX_RULES),  # both generations
        layout.pin_tables(): ("array", 2),  # both generations
        layout.pin_hits(): ("percpu_array", layout.slots),
        "netns": ("array", 1),  # the namespace's handle
        "baseline": ("hash", len(contract.CLASSES) + 2 * contract.MAX_RULES),  # what stats --reset read
    }
    maps = {pin: map_show(att.pin(pin)) for pin in att.pins() if pin != "prog"}
    assert {pin: (m["type"], m["max_entries"]) for pin, m in maps.items()} == want
    assert maps["rules"]["flags"] & 1  # BPF_F_NO_PREALLOC: memory only for rules that exist
    assert maps["baseline"]["flags"] & 1  # and for baselines of classes and rules that exist
    # The program's own maps (pinned or not) are all bounded too.
    prog = json.loads(subprocess.run(["bpftool", "-j", "prog", "show", "pinned", att.pin("prog")],
                                     capture_output=True, text=True, check=True).stdout)
    for map_id in prog["map_ids"]:
        m = json.loads(subprocess.run(["bpftool", "-j", "map", "show", "id", str(map_id)],
                                      capture_output=True, text=True, check=True).stdout)
        assert 0 < m["max_entries"] <= 2 * contract.MAX_RULES, m


def test_more_general_rules_than_the_tables_hold_are_refused(klab, tmp_path):
    """16,384 rules that are not plain prefixes fill what the tables hold: the
    next one is refused, and nothing changes."""
    f = tmp_path / "full.toml"
    rules = "\n".join(f'  {{ action = "drop", proto = "udp", dport = {p} }},' for p in range(1, contract.MAX_GENERAL + 1))
    f.write_text(f"[interfaces.{klab.iface}]\nrules = [\n{rules}\n]\n")
    f.chmod(0o600)
    klab.xdpctl("apply", str(f))
    before = local_snapshot(klab)
    prog = check_consistent(klab)["prog_id"]
    r = klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp", "--dport", "20000", check=False)
    one_line_error(r, 1, f"{klab.iface} would have 16,385 rules that match more than one prefix",
                   "at most 16,384", "Nothing was changed")
    assert local_snapshot(klab) == before and check_consistent(klab)["prog_id"] == prog
    assert len(klab.xdpctl.json("rule", "list", klab.iface)["rules"]) == contract.MAX_GENERAL
