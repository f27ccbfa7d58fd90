"""apply on a veth lab: it makes the interface match the file, a second
apply changes nothing, --dry-run changes nothing, a bad file changes nothing,
and export writes what applies back to nothing."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import snapshot
from xdpctl.traffic import frames
from xdpctl.traffic.predict import predict, rules_from_json
from xdpctl.datapath.program import FilterOptions
from xdpctl.traffic.sender import Sender

pytestmark = pytest.mark.kernel


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, 0o600)
    return str(path)


def config(iface: str, lab, extra_rules: str = "", policy: str = "allow") -> str:
    return f"""
[interfaces.{iface}]
policy = "{policy}"
drop_non_ip = false
rules = [
  {{ action = "drop", src = "{lab.peer4}/32", proto = "udp", dport = 53 }},
  {{ action = "pass", src_mac = "{lab.peer_mac}", proto = "tcp", priority = 10 }},
  {{ action = "drop", src = "fd78:6470::/32", proto = "icmpv6", icmp_type = 128 }},
  {{ action = "drop", ethertype = "0x88cc" }},{extra_rules}
]
"""


def test_apply_then_nothing_then_dry_run_then_export(klab, tmp_path):
    lab = klab.lab
    path = write(tmp_path, "x.toml", config(klab.iface, lab))
    dry = klab.xdpctl("apply", path, "--dry-run")
    assert "attach" in dry.stdout and "dry run" in dry.stdout
    assert klab.xdpctl.json("status")["interfaces"] == []
    out = klab.xdpctl("apply", path)
    assert "1 interface changed" in out.stdout
    assert "nothing to change" in klab.xdpctl("apply", path).stdout

    fs = frames.build("mix", lab.endpoints()) + frames.build("mix", lab.endpoints(dport=53))
    with Sender(lab.peer_if, lab.netns) as s:
        per_frame = s.send(fs, len(fs) * 2).per_frame
    klab.wait_for_total(sum(per_frame))
    (entry,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    want, hits = predict(fs, per_frame, rules_from_json(entry["rules"]), FilterOptions())
    assert entry["counters"] == want and {r["id"]: r["hits"] for r in entry["rules"]} == hits
    assert all(h["packets"] for h in hits.values())

    exported = klab.xdpctl("export").stdout
    again = write(tmp_path, "exported.toml", exported)
    assert "nothing to change" in klab.xdpctl("apply", again).stdout
    assert klab.xdpctl("export").stdout == exported
    (after,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    assert after["rules"] == entry["rules"]  # ids, order and hits all kept

    changed = write(tmp_path, "y.toml", config(klab.iface, lab, "\n  { action = \"drop\", dport = 9 },", "deny"))
    plan = klab.xdpctl("apply", changed, "--dry-run").stdout
    assert "+ drop dport 9" in plan and "policy allow -> policy deny" in plan
    assert klab.xdpctl("export").stdout == exported  # the dry run changed nothing
    klab.xdpctl("apply", changed)
    assert "nothing to change" in klab.xdpctl("apply", changed).stdout
    (entry,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    assert entry["policy"] == "deny" and len(entry["rules"]) == 5


def test_a_bad_file_changes_nothing(klab, tmp_path):
    lab = klab.lab
    good = config(klab.iface, lab)
    klab.xdpctl("apply", write(tmp_path, "good.toml", good))
    before = snapshot(klab)
    exported = klab.xdpctl("export").stdout
    bad = [
        (good.replace("dport = 53", "dport = 65536"), ":6: dport must be from 1 to 65535"),
        (good.replace(f"{lab.peer4}/32", "203.0.113.7/24"), ":6: src 203.0.113.7/24 has host bits"),
        (good + "\n[interfaces.nosuch9]\n", "no interface named 'nosuch9'"),
        (good.replace('policy = "allow"', 'policy = "allow"\ncolour = "red"'), ":4: unknown key 'colour'"),
        (good.replace('{ action = "drop", ethertype = "0x88cc" },',
                      '{ action = "drop", ethertype = "0x88cc" },\n  { action = "drop", ethertype = "0x88cc" },'),
         ":10: duplicate rule"),
    ]
    for i, (text, why) in enumerate(bad):
        r = klab.xdpctl("apply", write(tmp_path, f"bad{i}.toml", text), check=False)
        assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = klab.xdpctl("apply", str(tmp_path), check=False)
    assert r.returncode == 2 and "is a directory" in r.stderr
    world = write(tmp_path, "world.toml", good)
    os.chmod(world, 0o666)
    r = klab.xdpctl("apply", world, check=False)
    assert r.returncode == 2 and "writable by others" in r.stderr
    assert snapshot(klab) == before
    assert klab.xdpctl("export").stdout == exported


def test_a_failed_apply_puts_back_the_rules_it_removed_with_their_hits(klab, tmp_path):
    """Issue 12, defect 7: when a later interface fails, the earlier ones are
    put back as they were, and a rule the file had removed comes back with its
    hits (it had 222; it came back with 0)."""
    lab = klab.lab
    ns = lab.host_netns
    subprocess.run(["ip", "-n", ns, "link", "add", "xp0", "type", "veth", "peer", "name", "xp1"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "xp0", "up"], check=True)
    klab.xdpctl("apply", write(tmp_path, "x.toml", config(klab.iface, lab)))
    klab.send([frames.udp_frame(lab.endpoints(dport=53), b"x")], 222)
    klab.wait_for_total(222)
    (before,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    hits = {r["id"]: r["hits"]["packets"] for r in before["rules"]}
    assert sorted(hits.values()) == [0, 0, 0, 222], hits
    exported = klab.xdpctl("export").stdout

    # The file drops the rule with the hits, and names a veth that cannot take
    # an offloaded program: the first interface changes, the second fails.
    text = config(klab.iface, lab).replace(
        f'  {{ action = "drop", src = "{lab.peer4}/32", proto = "udp", dport = 53 }},\n', "")
    text += '\n[interfaces.xp0]\nmode = "offload"\nrules = []\n'
    r = klab.xdpctl("apply", write(tmp_path, "y.toml", text), check=False)
    assert r.returncode == 1 and "cannot take an offloaded XDP program" in r.stderr, r.stderr
    (after,) = klab.xdpctl.json("stats", klab.iface)["interfaces"]
    assert after["rules"] == before["rules"]  # ids, order and hits: 222 again, not 0
    assert after["counters"] == before["counters"]
    assert klab.xdpctl("export").stdout == exported


# xdpctl with a pause at the n-th program swap (a file appears when it gets
# there; it goes on once the test makes a second one, or after 60 s).
_PAUSED_AT_SWAP = """
import os, sys, time
from xdpctl.cli import main
from xdpctl.kernel import netlink
at, go, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
real, calls = netlink.Netlink.xdp_set, []

def xdp_set(self, *a, **k):
    calls.append(1)
    if len(calls) == n:
        open(at, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.01)
    return real(self, *a, **k)

netlink.Netlink.xdp_set = xdp_set
main(sys.argv[4:])
"""


def test_a_ctrl_c_at_the_swap_of_a_later_interface_puts_every_interface_back(klab, tmp_path):
    """Issue 12: a Ctrl-C held until the swap of the second interface is done
    (it must not cut the change in two) still undoes the whole apply: the
    second interface, changed by then, is put back with the first."""
    import signal
    import sys
    import time

    lab = klab.lab
    ns = lab.host_netns
    subprocess.run(["ip", "-n", ns, "link", "add", "xp0", "type", "veth", "peer", "name", "xp1"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "xp0", "up"], check=True)
    old = config(klab.iface, lab) + config("xp0", lab).split("\n", 1)[1]
    klab.xdpctl("apply", write(tmp_path, "old.toml", old))
    exported = klab.xdpctl("export").stdout
    new = old.replace('policy = "allow"', 'policy = "deny"')  # both interfaces: a new program each
    at, go = tmp_path / "at", tmp_path / "go"
    p = subprocess.Popen([sys.executable, "-c", _PAUSED_AT_SWAP, str(at), str(go), "2", "--netns", ns,
                          "apply", write(tmp_path, "new.toml", new)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        deadline = time.monotonic() + 120
        while not at.exists():
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        p.send_signal(signal.SIGINT)  # at the second swap: held until it is done
        time.sleep(0.2)
    finally:
        go.touch()
        p.wait(timeout=300)
        err = p.stderr.read()
        p.stderr.close()
    assert p.returncode == 130 and err.strip() == "xdpctl: interrupted", (p.returncode, err)
    assert klab.xdpctl("export").stdout == exported
