"""selftest: prove the installation end to end on a lab of its own.

Environment checks (doctor's), then a lab, `attach --drop-non-ip`, the mix
profile from the peer, and every class's pass and drop packets and bytes
compared with what predict.py says the program must count; then a rule and
its hits; then a UDP datagram that must reach a socket behind the filter.
Everything it made is removed at the end (unless keep), pass or fail.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import asdict, dataclass

from ..datapath import contract, counters
from . import doctor
from ..kernel import privileges
from ..errors import BadInput

LAB = "selftest"
ROUNDS = 3          # each distinct frame of the mix is sent this many times
RULE_FRAMES = 25    # frames that the selftest's rule must count
SETTLE_S = 5.0      # counting happens in softirq, a moment after the send


@dataclass
class Row:
    check: str
    expected: str
    seen: str
    ok: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _fmt(c: dict) -> str:
    """pass and drop, and any other verdict that counted something."""
    shown = [v for v in c if v in ("pass", "drop") or c[v]["packets"] or c[v]["bytes"]]
    return ", ".join(f"{v} {c[v]['packets']} ({c[v]['bytes']} B)" for v in shown)


def compare(expected: dict, seen: dict) -> list[Row]:
    """One row per protocol class: pass and drop, packets and bytes."""
    return [Row(cls, _fmt(expected[cls]), _fmt(seen[cls]), expected[cls] == seen[cls]) for cls in expected]


def _counts(app, iface: str) -> dict:
    from ..observe.report import stats

    (entry,) = stats(app, (iface,))["interfaces"]
    return entry


def _packets(entry_counters: dict) -> int:
    return sum(c["packets"] for c in counters.total(entry_counters).values())


def _wait(app, iface: str, total: int) -> dict:
    deadline = time.monotonic() + SETTLE_S
    while True:
        entry = _counts(app, iface)
        if _packets(entry["counters"]) >= total or time.monotonic() > deadline:
            time.sleep(0.1)  # and let any frame that should not come arrive
            return _counts(app, iface)
        time.sleep(0.05)


def _environment() -> list[Row]:
    rows = []
    for check in (doctor._privileges(privileges.effective()), doctor._bpffs(), doctor._bcc(),
                  doctor._headers()):
        seen = "usable" if check.status == doctor.OK else check.detail
        if check.status == doctor.FAIL and check.hint:
            seen += f" ({check.hint})"
        rows.append(Row(check.name, "usable", seen, check.status != doctor.FAIL))
    return rows


def _mix(app, lab) -> list[Row]:
    from ..traffic import frames
    from ..traffic.predict import predict
    from ..datapath.program import FilterOptions
    from ..traffic.sender import Sender

    mix = frames.build("mix", lab.endpoints())
    before = _counts(app, lab.host_if)["counters"]
    with Sender(lab.peer_if, lab.netns) as s:
        sent = s.send(mix, len(mix) * ROUNDS)
    expected, _ = predict(mix, sent.per_frame, [], FilterOptions(drop_non_ip=True))
    for cls, per in before.items():  # counters start where the lab's ARP and such left them
        for verdict, c in per.items():
            for unit in ("packets", "bytes"):
                expected[cls][verdict][unit] += c[unit]
    seen = _wait(app, lab.host_if, _packets(expected))["counters"]
    return compare(expected, seen)


def _rule(app, lab) -> list[Row]:
    from ..traffic import frames
    from ..lifecycle import ruleops
    from ..rules.model import parse_match
    from ..traffic.sender import Sender

    change = ruleops.add(app, lab.host_if, contract.ACTION_DROP, parse_match({"proto": "udp", "dport": "9"}), None)
    rule_id = change.rule.id
    frame = frames.udp_frame(lab.endpoints(dport=9), b"discard me")
    before = _counts(app, lab.host_if)
    with Sender(lab.peer_if, lab.netns) as s:
        s.send([frame], RULE_FRAMES)
    after = _wait(app, lab.host_if, _packets(before["counters"]) + RULE_FRAMES)
    (rule,) = [r for r in after["rules"] if r["id"] == rule_id]
    want = {"packets": RULE_FRAMES, "bytes": RULE_FRAMES * len(frame)}
    got = {"packets": rule["hits"]["packets"], "bytes": rule["hits"]["bytes"]}
    dropped = after["counters"]["ipv4/udp"]["drop"]["packets"] - before["counters"]["ipv4/udp"]["drop"]["packets"]
    return [
        Row(f"rule {rule_id}: drop udp dport 9, hits", f"{want['packets']} ({want['bytes']} B)",
            f"{got['packets']} ({got['bytes']} B)", got == want),
        Row("rule: ipv4/udp drops", str(RULE_FRAMES), str(dropped), dropped == RULE_FRAMES),
    ]


def _delivery(lab) -> Row:
    from ..traffic import frames
    from ..kernel.netlink import socket_in
    from ..traffic.sender import Sender

    payload = b"xdpctl selftest: through the filter"
    sock = socket_in(lab.host_netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((lab.host4, 0))
        sock.settimeout(3)
        with Sender(lab.peer_if, lab.netns) as s:
            s.send([frames.udp_frame(lab.endpoints(dport=sock.getsockname()[1]), payload)], 1)
        try:
            data, _ = sock.recvfrom(2048)
        except socket.timeout:
            data = b""
    finally:
        sock.close()
    return Row("passed UDP reaches a socket", "1 datagram", "1 datagram" if data == payload else "nothing",
               data == payload)


def run(app, keep: bool = False) -> tuple[list[Row], dict | None]:
    """The rows, and the lab (as a dict) when keep left it up."""
    from ..traffic import lab as labs
    from ..lifecycle.attach import attach
    from ..lifecycle.detach import detach
    from ..datapath.program import FilterOptions

    if app.netns:
        raise BadInput("selftest makes its own lab; run it without --netns")
    rows = _environment()
    if not all(r.ok for r in rows):
        return rows, None
    lab = labs.up(LAB)
    attached = False
    try:
        attach(app, lab.host_if, options=FilterOptions(drop_non_ip=True))
        attached = True
        rows.append(Row(f"attach {lab.host_if} --drop-non-ip", "attached", "attached", True))
        rows += _mix(app, lab)
        rows += _rule(app, lab)
        rows.append(_delivery(lab))
    finally:
        if not keep:
            with contextlib.suppress(Exception):
                if attached:
                    detach(app, lab.host_if)
            labs.down(lab)
    return rows, (lab.as_dict() if keep else None)
