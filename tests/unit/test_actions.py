"""The actions beyond pass and drop, without a kernel: what the options say
(rules/actions.py), the record and the decision of a steering rule, the
devmap's layout per generation, xdpctl.toml's keys and round trip, what
apply plans, and the machine checks of lifecycle/steering.py against a fake
netlink and fake CPU lists."""

from __future__ import annotations

import dataclasses

import pytest

from xdpctl.datapath import contract
from xdpctl.datapath.layout import Layout
from xdpctl.errors import BadInput, InterfaceNotFound
from xdpctl.kernel import cpus
from xdpctl.kernel.netlink import IFF_LOWER_UP, IFF_UP, NETDEV_XDP_ACT_NDO_XMIT, Link, Xdp
from xdpctl.lifecycle import steering
from xdpctl.rules import actions
from xdpctl.rules.actions import Steer, Target
from xdpctl.rules.config_file import dump, parse
from xdpctl.rules.model import Rule, parse_match, unpack_targets
from xdpctl.rules.plan import plan_interface
from xdpctl.rules.tables import build

UDP = parse_match({"proto": "udp"})


def rule(action, steer=actions.NO_STEER, id_=1, match=UDP, prio=contract.PRIORITY_DEFAULT) -> Rule:
    return Rule(action, match, prio, prio != contract.PRIORITY_DEFAULT, id_, id_, id_ - 1, steer)


def to(*names: str) -> Steer:
    return Steer(to=tuple(Target(n, 10 + i) for i, n in enumerate(names)))


# --- the options ---------------------------------------------------------------------


def test_parse_gives_the_action_code_and_where_it_sends():
    assert actions.parse("pass") == (contract.ACTION_PASS, actions.NO_STEER)
    assert actions.parse("tx") == (contract.ACTION_TX, actions.NO_STEER)
    code, steer = actions.parse("redirect", to="eth1, eth2")
    assert code == contract.ACTION_REDIRECT and [t.name for t in steer.to] == ["eth1", "eth2"]
    code, steer = actions.parse("redirect", cpu="3")
    assert code == contract.ACTION_REDIRECT_CPU and steer.cpu == 3 and steer.queue_size == contract.QUEUE_DEFAULT
    assert actions.parse("redirect", cpu=0, queue=64)[1].queue_size == 64
    # From a file: a list of names, numbers as numbers, the file's key names in messages.
    assert [t.name for t in actions.parse("redirect", to=["a", "b"])[1].to] == ["a", "b"]
    with pytest.raises(BadInput, match="^to and cpu cannot be given together"):
        actions.parse("redirect", to=["a"], cpu=1, label=lambda k: k)
    with pytest.raises(BadInput, match="takes interface names"):
        actions.parse("redirect", to=["a", 3])


def test_a_rule_records_and_reads_back_where_it_sends():
    for r in (rule(contract.ACTION_REDIRECT, to("eth1", "eth2", "eth3")),
              rule(contract.ACTION_REDIRECT_CPU, Steer(cpu=7, queue=256)),
              rule(contract.ACTION_TX), rule(contract.ACTION_DROP)):
        back = Rule.unpack(r.pack(), r.pack_targets())
        assert back == r and back.describe() == r.describe()
    r = rule(contract.ACTION_REDIRECT, Steer(to=tuple(Target(f"if{i}", i + 1) for i in range(64))))
    assert unpack_targets(r.pack_targets()) == r.steer.to  # the count from the names alone
    assert Rule.unpack(r.pack(), r.pack_targets()).steer == r.steer
    assert rule(contract.ACTION_REDIRECT, to("eth1")).describe()["to"] == ["eth1"]
    default_queue = rule(contract.ACTION_REDIRECT_CPU, Steer(cpu=1))
    assert Rule.unpack(default_queue.pack()).identity == default_queue.identity  # the queue read back is the default
    assert default_queue.describe() == {
        "id": 1, "priority": 1000, "action": "redirect", "match": {"proto": "udp"}, "cpu": 1, "queue": 2048}


def test_identity_tells_targets_and_queues_apart():
    a = rule(contract.ACTION_REDIRECT, to("eth1", "eth2"))
    assert a.identity != rule(contract.ACTION_REDIRECT, to("eth2", "eth1")).identity  # the order picks by hash
    assert a.identity != rule(contract.ACTION_REDIRECT, Steer(to=(Target("eth1", 99), Target("eth2", 11)))).identity
    cpu = rule(contract.ACTION_REDIRECT_CPU, Steer(cpu=1))
    assert cpu.identity == rule(contract.ACTION_REDIRECT_CPU, Steer(cpu=1, queue=contract.QUEUE_DEFAULT)).identity
    assert cpu.identity != rule(contract.ACTION_REDIRECT_CPU, Steer(cpu=1, queue=64)).identity


# --- the devmap and the decisions ----------------------------------------------------------


def test_target_lists_share_devmap_entries_in_decision_order():
    rules = [
        rule(contract.ACTION_REDIRECT, to("b", "c"), 1, prio=20),
        rule(contract.ACTION_REDIRECT, to("a"), 2, prio=10),
        rule(contract.ACTION_REDIRECT, to("b", "c"), 3, match=parse_match({"proto": "tcp"}), prio=30),
        rule(contract.ACTION_REDIRECT_CPU, Steer(cpu=1), 4),
        rule(contract.ACTION_TX, id_=5),
    ]
    offsets = actions.devmap_offsets(rules)
    assert offsets == {to("a").to: 0, to("b", "c").to: 1}
    assert actions.devmap_entries(rules) == 3
    built = build(rules)
    layout = Layout().grown(built.needs)
    assert layout.actions == contract.ACTS_REDIRECT | contract.ACTS_CPU | contract.ACTS_TX
    raw = built.tables(layout)
    decision = next(s for s in layout.sections() if s.name == "decision")
    got = [contract.DECISION.unpack_from(raw, decision.offset + i * contract.DECISION.size)[2:] for i in range(5)]
    # Decision order: priority 10, 20, 30, then the two of priority 1000 in insertion order.
    assert got == [(contract.ACTION_REDIRECT, 1, 0), (contract.ACTION_REDIRECT, 2, 1), (contract.ACTION_REDIRECT, 2, 1),
                   (contract.ACTION_REDIRECT_CPU, 0, 1), (contract.ACTION_TX, 0, 0)]


def test_limits_on_targets_and_queues():
    many = [rule(contract.ACTION_REDIRECT, Steer(to=tuple(Target(f"g{g}i{i}", 1000 * g + i) for i in range(64))), g + 1,
                 match=parse_match({"dport": str(g + 1)})) for g in range(65)]
    actions.check_devmap(many[:64], "eth0")  # 64 x 64 = 4096: the generation's part, whole
    with pytest.raises(BadInput, match="eth0 would have 4,160 redirect targets"):
        actions.check_devmap(many, "eth0")
    a = rule(contract.ACTION_REDIRECT_CPU, Steer(cpu=1), 1)
    b = rule(contract.ACTION_REDIRECT_CPU, Steer(cpu=1, queue=64), 2, match=parse_match({"proto": "tcp"}))
    with pytest.raises(BadInput, match="CPU 1 already takes frames from rule 1 with --queue 2048; a CPU has one queue"):
        actions.check_queues([a, b])
    actions.check_queues([a, dataclasses.replace(b, steer=Steer(cpu=0, queue=64))])


def test_layouts_grow_for_actions_they_lack():
    plain = Layout().grown(build([rule(contract.ACTION_DROP)]).needs)
    assert not plain.actions and not any(name.startswith("XDPCTL_REDIRECT") for name, _ in plain.defines())
    needs = build([rule(contract.ACTION_DROP), rule(contract.ACTION_TX, id_=2)]).needs
    assert not plain.fits(needs)
    grown = plain.grown(needs)
    assert grown.actions == contract.ACTS_TX and ("XDPCTL_TX", None) in grown.defines()
    assert Layout.unpack(grown.pack()) == grown  # recorded in meta, read back
    assert "actions tx" in grown.describe()


# --- xdpctl.toml -------------------------------------------------------------------------


FILE = """
[interfaces.eth0]
rules = [
  { action = "redirect", to = ["eth1", "eth2"], proto = "udp" },
  { action = "redirect", to = "eth3", dst = "198.51.100.0/24" },
  { action = "redirect", cpu = 1, queue = 512, proto = "tcp", dport = 443 },
  { action = "redirect", cpu = 0, proto = "tcp", dport = 80 },
  { action = "tx", proto = "udp", dport = 7 },
]
"""


def test_the_file_reads_and_writes_the_steering_keys():
    iface = parse(FILE).interfaces["eth0"]
    steers = [spec.steer for spec in iface.rules]
    assert [t.name for t in steers[0].to] == ["eth1", "eth2"] and [t.name for t in steers[1].to] == ["eth3"]
    assert (steers[2].cpu, steers[2].queue_size, steers[3].queue_size) == (1, 512, contract.QUEUE_DEFAULT)
    plan = plan_interface(iface, None)
    assert plan.lines[1:3] == ["eth0: + redirect to eth1,eth2 proto udp", "eth0: + redirect to eth3 dst 198.51.100.0/24"]
    assert plan.lines[3] == "eth0: + redirect cpu 1 queue 512 proto tcp dport 443"
    text = dump([("eth0", "native", "allow", False, plan.rules)])
    assert '{ action = "redirect", to = ["eth1", "eth2"], proto = "udp" },' in text
    assert '{ action = "redirect", cpu = 1, queue = 512, proto = "tcp", dport = 443 },' in text
    assert '{ action = "redirect", cpu = 0, proto = "tcp", dport = 80 },' in text  # the default queue is not written
    again = parse(text).interfaces["eth0"]
    assert [s.identity for s in again.rules] == [s.identity for s in iface.rules]


@pytest.mark.parametrize("rule_text, message", [
    ('{ action = "redirect", proto = "udp" }', "4: redirect needs to IF[,IF...] (out of interfaces) or cpu N"),
    ('{ action = "redirect", to = ["a"], cpu = 1 }', "4: to and cpu cannot be given together"),
    ('{ action = "pass", to = ["a"] }', "4: to is for redirect"),
    ('{ action = "redirect", to = [] }', "4: to needs interface names"),
    ('{ action = "redirect", to = 5 }', "4: to takes interface names"),
    ('{ action = "redirect", cpu = "x" }', "4: cpu must be a decimal number"),
    ('{ action = "redirect", cpu = 1, queue = 0 }', "4: queue must be from 1 to 16384"),
    ('{ action = "redirect", to = ["a"], queue = 8 }', "4: queue sizes a CPU's queue"),
    ('{ action = "bounce" }', "4: action 'bounce' is not one of: pass, drop, redirect, tx"),
])
def test_bad_steering_in_a_file_names_its_line(rule_text, message):
    with pytest.raises(BadInput) as exc:
        parse(f"\n[interfaces.eth0]\nrules = [\n  {rule_text},\n]\n", "f.toml")
    assert str(exc.value).startswith("f.toml:") and message in str(exc.value), str(exc.value)


def test_one_queue_per_cpu_in_a_file():
    text = """
[interfaces.eth0]
rules = [
  { action = "redirect", cpu = 1, proto = "tcp" },
  { action = "redirect", cpu = 1, queue = 64, proto = "udp" },
]
"""
    with pytest.raises(BadInput, match=r"^f.toml:5: CPU 1 already takes frames with queue 2048 \(line 4\)"):
        parse(text, "f.toml")


# --- the machine checks (steering.py) against fakes -------------------------------------------


def link(name: str, ifindex: int, *, up=True, carrier=True, kind="veth", xdp=False) -> Link:
    flags = (IFF_UP if up else 0) | (IFF_LOWER_UP if carrier else 0)
    return Link(ifindex, name, 1500, kind, Xdp("native", 9, {}) if xdp else None, flags)


class FakeNetlink:
    def __init__(self, links: dict[str, Link], peers: dict[str, Link], features: dict[int, int | None]):
        self.links, self.peers, self.features = links, peers, features

    def link(self, name):
        if name not in self.links:
            raise InterfaceNotFound(name)
        return self.links[name]

    def link_by_index(self, ifindex):
        return next((l for l in self.links.values() if l.ifindex == ifindex), None)

    def peer(self, l):
        return self.peers.get(l.ifname)

    def xdp_features(self, ifindex):
        return self.features.get(ifindex)


@dataclasses.dataclass
class FakeApp:
    netlink: FakeNetlink


def app_with(release="6.12.0", **kw) -> FakeApp:
    links = {"eth0": link("eth0", 2, kind=""), "veth1": link("veth1", 3), "veth2": link("veth2", 4),
             "down0": link("down0", 5, up=False), "nic0": link("nic0", 6, kind=""), "nic1": link("nic1", 7, kind="")}
    peers = {"veth1": link("p1", 30, xdp=True), "veth2": link("p2", 40)}
    features = {6: NETDEV_XDP_ACT_NDO_XMIT | 1, 7: 1, 4: kw.get("veth2_features")}
    return FakeApp(FakeNetlink(links, peers, features))


@pytest.fixture
def release(monkeypatch):
    def set_release(text):
        monkeypatch.setattr(steering.kernel_version, "running_release", lambda: text)
    set_release("6.12.0")
    return set_release


def test_targets_resolve_to_name_and_ifindex(release):
    steer = steering.resolve(app_with(), "eth0", contract.ACTION_REDIRECT, to("veth1", "nic0"))
    assert steer.to == (Target("veth1", 3), Target("nic0", 6))


@pytest.mark.parametrize("names, message", [
    (("nosuch",), "--to nosuch: no interface of that name in eth0's network namespace; a redirect target must be"),
    (("eth0",), "--to eth0 is eth0 itself: to send frames back out of the interface they came in on, use the tx"),
    (("down0",), "--to down0 is down; bring it up (`ip link set down0 up`)"),
    (("veth2",), "--to veth2 is a veth whose peer (p2) runs no XDP program: Linux drops frames redirected into"),
    (("nic1",), "--to nic1 cannot transmit XDP frames: its driver does not implement ndo_xdp_xmit"),
])
def test_targets_that_cannot_be_sent_to_are_refused(release, names, message):
    with pytest.raises(BadInput) as exc:
        steering.resolve(app_with(), "eth0", contract.ACTION_REDIRECT, to(*names))
    assert str(exc.value).startswith(message), str(exc.value)


def test_a_veth_peer_with_gro_is_seen_from_6_6_on(release):
    with_gro = app_with(veth2_features=NETDEV_XDP_ACT_NDO_XMIT)
    assert steering.resolve(with_gro, "eth0", contract.ACTION_REDIRECT, to("veth2")).to == (Target("veth2", 4),)
    release("6.1.0-57-amd64")  # before 6.6 the kernel does not say: the peer's XDP program is what counts
    with pytest.raises(BadInput) as exc:
        steering.resolve(with_gro, "eth0", contract.ACTION_REDIRECT, to("veth2"))
    assert "GRO" not in str(exc.value) and "Attach an XDP program to p2" in str(exc.value)
    # In generic mode the stack transmits: up is enough.
    assert steering.resolve(app_with(), "eth0", contract.ACTION_REDIRECT, to("veth2"), mode="generic").to[0].ifindex == 4


def test_tx_needs_the_interface_itself_to_send_back(release):
    app = app_with()
    with pytest.raises(BadInput, match=r"^tx sends frames back out of veth2, but it is a veth whose peer \(p2\)"):
        steering.resolve(app, "veth2", contract.ACTION_TX, actions.NO_STEER)
    assert steering.resolve(app, "veth1", contract.ACTION_TX, actions.NO_STEER) == actions.NO_STEER
    # GRO on the peer takes redirected frames, not sent-back ones: the kernel
    # wakes the peer for XDP_TX only when an XDP program runs there.
    with_gro = app_with(veth2_features=NETDEV_XDP_ACT_NDO_XMIT)
    assert steering.resolve(with_gro, "eth0", contract.ACTION_REDIRECT, to("veth2")).to[0].ifindex == 4
    with pytest.raises(BadInput, match="GRO is not enough"):
        steering.resolve(with_gro, "veth2", contract.ACTION_TX, actions.NO_STEER)


def test_cpus_that_do_not_exist_or_are_offline_are_refused(monkeypatch):
    monkeypatch.setattr(cpus, "possible", lambda root=None: {0, 1, 2, 3})
    monkeypatch.setattr(cpus, "online", lambda root=None: {0, 1, 3})
    steering.check_cpu(3)
    with pytest.raises(BadInput, match=r"^--cpu 4: this machine has no CPU 4 \(its CPUs are 0-3\)"):
        steering.check_cpu(4)
    with pytest.raises(BadInput, match=r"^--cpu 2: CPU 2 is offline \(online: 0, 1, 3\); bring it online"):
        steering.check_cpu(2)


def test_cpu_lists_read_as_the_kernel_writes_them(tmp_path):
    (tmp_path / "possible").write_text("0-7\n")
    (tmp_path / "online").write_text("0-2,4,6-7\n")
    assert cpus.possible(str(tmp_path)) == set(range(8))
    assert cpus.online(str(tmp_path)) == {0, 1, 2, 4, 6, 7}
    assert cpus.parse_list("") == set()


def test_problems_name_the_rule_and_the_target(release, monkeypatch):
    app = app_with()
    monkeypatch.setattr(cpus, "online", lambda root=None: {0})
    rules = [rule(contract.ACTION_REDIRECT, Steer(to=(Target("veth1", 3), Target("gone0", 77))), 1),
             rule(contract.ACTION_REDIRECT, Steer(to=(Target("old", 4),)), 2),
             rule(contract.ACTION_REDIRECT_CPU, Steer(cpu=1), 3)]
    found = steering.problems(app, "eth0", rules)
    assert [(p["rule"], p["problem"]) for p in found] == [(1, "gone"), (2, "gone"), (3, "offline")]
    assert found[0]["message"] == ("rule 1 redirects to gone0 (ifindex 77), but it is gone; its frames are dropped "
                                   "and counted as aborted")
    assert "ifindex 4 is now veth2" in found[1]["message"]
    assert "CPU 1, which is offline now" in found[2]["message"]
