"""Issue 5, guarantees 8-10: interfaces that vanish (and new ones that take
their name and ifindex), network namespaces with look-alike interfaces, and
XDP modes (no silent fallback, no mixing, the MTU the driver accepts).

Already covered elsewhere, not repeated here: native on an interface without
native support fails and suggests generic, offload on a veth fails, xdpctl's
own native program is not joined by a generic one (test_errors.py); generic
mode is reported and counts (test_attach_stats.py).
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass

import pytest

from conftest import KernelLab, Xdpctl, attached_prog_id, expected, netns_ino, remove_state_of
from state_checks import (
    FOREIGN_NAME,
    assert_nothing_left,
    check_consistent,
    have_foreign_obj,
    ip_load_cmd,
    link,
    load_foreign,
    local_snapshot,
    one_line_error,
    run_with_intruder,
    state_dir,
    tree,
    wait_gone,
)
from xdpctl.traffic import frames, lab as labs
from xdpctl.kernel import netlink

pytestmark = pytest.mark.kernel

needs_foreign = pytest.mark.skipif(not have_foreign_obj(), reason="needs iproute2 and xdp-tools' xdpdump_xdp.o")


def delete_host_end(klab) -> None:
    subprocess.run(["ip", "-n", klab.lab.host_netns, "link", "del", klab.iface], check=True)


def recreate_host_end(klab, ifindex: int) -> None:
    """A new veth pair where the lab's was: the same names, the same ifindex
    (a namespace may ask for one), the lab's addresses and neighbours."""
    from pyroute2 import IPRoute

    lab = klab.lab
    with IPRoute(netns=lab.host_netns, flags=0) as ipr:
        ipr.link("add", ifname=lab.host_if, index=ifindex, kind="veth",
                 peer={"ifname": lab.peer_if, "net_ns_fd": lab.netns})
    labs.configure(lab)


# --- 8. interfaces that vanish ---------------------------------------------------

GONE = "interface {} is gone; xdpctl removed the state it kept for it"


@pytest.mark.parametrize("command", ["stats", "detach", "status", "stats-all"])
def test_a_vanished_interface_is_reported_and_its_state_removed(klab, command):
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    klab.send(frames.build("mix", klab.lab.endpoints()))
    before = check_consistent(klab)
    delete_host_end(klab)
    if command in ("stats", "detach"):
        one_line_error(klab.xdpctl(command, klab.iface, check=False), 1, GONE.format(klab.iface))
    elif command == "status":
        assert klab.xdpctl.json("status") == {
            "interfaces": [], "stale": [{"ifname": klab.iface, "ifindex": None, "reason": "interface gone; state removed"}]}
    else:
        assert klab.xdpctl.json("stats") == {"interfaces": []}
    assert not state_dir(klab).exists(), tree(klab)
    assert_nothing_left_but_the_link(before)
    # Said once: the next command finds no interface and no state.
    one_line_error(klab.xdpctl("stats", klab.iface, check=False), 1, f"no interface named '{klab.iface}'")
    assert klab.xdpctl.json("status") == {"interfaces": []}


def assert_nothing_left_but_the_link(before: dict) -> None:
    """The program and maps of before are freed (the interface they were on is gone)."""
    assert wait_gone("prog", {before["prog_id"]}) == set()
    assert wait_gone("map", before["map_ids"]) == set()


def test_a_new_interface_with_the_old_name_and_ifindex_is_not_claimed(klab):
    """The old interface goes with no xdpctl command in between, so its state
    is still there when a new one takes its name and ifindex."""
    klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    mix = frames.build("mix", klab.lab.endpoints())
    klab.send(mix, count=3 * len(mix))
    klab.wait_for_total(3 * len(mix))
    old = check_consistent(klab)
    ifindex = link(klab).ifindex
    delete_host_end(klab)
    recreate_host_end(klab, ifindex)
    assert link(klab).ifindex == ifindex and link(klab).xdp is None
    assert tree(klab) != []  # the old state is still there ...

    # ... and claims nothing: no old counters, no program of xdpctl's.
    one_line_error(klab.xdpctl("stats", klab.iface, check=False), 1, f"xdpctl manages no program on {klab.iface}")
    assert klab.xdpctl.json("stats") == {"interfaces": []}
    status = klab.xdpctl.json("status")
    assert status["interfaces"] == []
    assert status["stale"] == [{"ifname": klab.iface, "ifindex": ifindex,
                                "reason": "xdpctl's state remains but no program is attached"}]
    one_line_error(klab.xdpctl("rule", "add", klab.iface, "drop", "--proto", "udp", check=False), 1,
                   "manages no program")

    out = klab.xdpctl("attach", klab.iface).stdout  # a fresh attach, count only
    assert out.startswith(f"attached to {klab.iface}: prog "), out
    new = check_consistent(klab)
    assert new["prog_id"] != old["prog_id"] and not new["map_ids"] & old["map_ids"]
    assert all(v["packets"] == 0 for per in klab.counters().values() for v in per.values())
    sent = klab.send(mix)
    assert klab.wait_for_total(len(mix)) == expected(sent, drop_non_ip=False)
    assert_nothing_left_but_the_link(old)  # the old program and maps are freed
    klab.xdpctl("detach", klab.iface)
    assert_nothing_left(klab, {new["prog_id"]}, new["map_ids"])


# --- 9. namespaces ----------------------------------------------------------------

SAME_NAME = "xg0"


@dataclass
class RenamedLab(KernelLab):
    """A lab whose host end was renamed."""

    ifname: str = SAME_NAME

    @property
    def iface(self) -> str:
        return self.ifname


@pytest.fixture
def two_labs():
    made = []
    try:
        for _ in range(2):
            lab = labs.up("t" + secrets.token_hex(4), isolated=True)
            made.append(lab)
            ns = ["ip", "-n", lab.host_netns, "link", "set", "dev"]
            subprocess.run([*ns, lab.host_if, "down"], check=True)
            subprocess.run([*ns, lab.host_if, "name", SAME_NAME], check=True)
            subprocess.run([*ns, SAME_NAME, "up"], check=True)
            with netlink.Netlink(namespace=lab.host_netns) as host:  # down flushed them
                host.neigh_add(SAME_NAME, lab.peer4, lab.peer_mac)
                host.neigh_add(SAME_NAME, lab.peer6, lab.peer_mac)
        yield [RenamedLab(lab, Xdpctl(lab.host_netns)) for lab in made]
    finally:
        for lab in made:
            ino = netns_ino(lab.host_netns)
            labs.down(lab)
            remove_state_of(ino)


def test_two_namespaces_with_the_same_interface_are_kept_apart(two_labs):
    a, b = two_labs
    assert link(a).ifindex == link(b).ifindex  # same name, same ifindex, two namespaces
    a.xdpctl("attach", SAME_NAME, "--drop-non-ip")
    b.xdpctl("attach", SAME_NAME)
    in_a, in_b = check_consistent(a), check_consistent(b)
    assert state_dir(a) != state_dir(b) and not in_a["map_ids"] & in_b["map_ids"]

    mix = frames.build("mix", a.lab.endpoints())
    sent_a = a.send(mix)
    assert a.wait_for_total(len(mix)) == expected(sent_a, drop_non_ip=True)
    assert all(v["packets"] == 0 for per in b.counters().values() for v in per.values())
    sent_b = b.send(frames.build("mix", b.lab.endpoints()), count=2 * len(mix))
    assert b.wait_for_total(2 * len(mix)) == expected(sent_b, drop_non_ip=False)
    assert a.counters() == expected(sent_a, drop_non_ip=True)

    a.xdpctl("stats", SAME_NAME, "--reset")
    assert b.counters() == expected(sent_b, drop_non_ip=False)
    a.xdpctl("rule", "add", SAME_NAME, "drop", "--proto", "udp")
    assert b.xdpctl.json("rule", "list", SAME_NAME)["rules"] == []

    a.xdpctl("detach", SAME_NAME)
    assert_nothing_left(a, {in_a["prog_id"]})
    assert check_consistent(b)["prog_id"] == in_b["prog_id"]
    (entry,) = b.xdpctl.json("status")["interfaces"]
    assert entry["managed"] is True and entry["options"] == []
    b.xdpctl("detach", SAME_NAME)
    assert_nothing_left(b, {in_b["prog_id"]}, in_b["map_ids"])


# --- 10. explicit modes ------------------------------------------------------------


def xdp_flavour(klab) -> str:
    """What iproute2 reports for the link: xdp (native) or xdpgeneric."""
    out = subprocess.run(["ip", "-n", klab.lab.host_netns, "link", "show", "dev", klab.iface],
                         capture_output=True, text=True, check=True).stdout
    return next(w for w in out.split() if w.startswith("xdp"))


@pytest.mark.parametrize("mode, flavour", [("native", "xdp"), ("generic", "xdpgeneric")])
def test_the_mode_asked_for_is_the_mode_attached_and_reported(klab, mode, flavour):
    out = klab.xdpctl("attach", klab.iface, "--mode", mode).stdout
    assert f"({mode}, count only)" in out
    assert xdp_flavour(klab) == flavour
    (entry,) = klab.xdpctl.json("status")["interfaces"]
    assert entry["mode"] == mode and link(klab).xdp.prog_ids == {mode: entry["prog_id"]}


@needs_foreign
def test_a_foreign_generic_program_is_not_joined_or_replaced_in_native_mode(klab):
    theirs = load_foreign(klab, mode="generic")
    before = local_snapshot(klab)
    one_line_error(klab.xdpctl("attach", klab.iface, check=False), 1,
                   f"already carries XDP program {theirs} ({FOREIGN_NAME}), not xdpctl's")
    one_line_error(klab.xdpctl("attach", klab.iface, "--force", check=False), 1,
                   f"{klab.iface} carries a generic XDP program; replacing it in native mode would mix modes",
                   "--mode generic")
    assert local_snapshot(klab) == before
    out = klab.xdpctl("attach", klab.iface, "--force", "--mode", "generic").stdout
    assert "replaced a foreign program" in out and "(generic," in out
    assert xdp_flavour(klab) == "xdpgeneric"
    assert check_consistent(klab)["prog_id"] != theirs


@needs_foreign
def test_a_generic_program_that_appears_while_attaching_native_is_not_joined(klab):
    """The check saw an empty interface; the kernel refuses the mix."""
    r = run_with_intruder(klab, ["attach", klab.iface], ip_load_cmd(klab, mode="generic"))
    one_line_error(r, 1, "one interface cannot mix native and generic XDP")
    assert xdp_flavour(klab) == "xdpgeneric"
    assert not state_dir(klab).exists(), tree(klab)


def set_mtu(netns: str, ifname: str, mtu: int) -> None:
    subprocess.run(["ip", "-n", netns, "link", "set", "dev", ifname, "mtu", str(mtu)], check=True)


@pytest.mark.parametrize("ends", ["peer", "both"])
def test_an_mtu_too_large_for_native_xdp_is_named(klab, ends):
    """veth takes native XDP only while its peer's MTU fits a page."""
    lab = klab.lab
    set_mtu(lab.netns, lab.peer_if, 9000)
    if ends == "both":
        set_mtu(lab.host_netns, lab.host_if, 9000)
    before = local_snapshot(klab)
    r = klab.xdpctl("attach", klab.iface, check=False)
    one_line_error(r, 1, f"the veth peer of {klab.iface}, {lab.peer_if}, has MTU 9000, too large for native XDP",
                   "lower the peer's MTU or use --mode generic")
    assert local_snapshot(klab) == before and attached_prog_id(klab) == 0
    # What the error suggests works, and says which mode it is.
    out = klab.xdpctl("attach", klab.iface, "--mode", "generic").stdout
    assert "(generic, count only)" in out and xdp_flavour(klab) == "xdpgeneric"
