"""Issue 12, defect 13: damaged state (a pin of an attachment removed behind
xdpctl's back) is reported by doctor and `clean --dry-run` (which change
nothing), settled by clean and by the next command that touches the
interface, and never an internal error (exit 70). The program still holds
every map it uses, so nothing is lost: the pins come back as the same maps,
counters and hits included.

Each pin of an attachment with rules goes missing in turn, before each of
doctor, clean --dry-run, status, stats, rule list, export, clean and detach.
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import attached_prog_id
from state_checks import assert_nothing_left, attachment, check_consistent
from xdpctl.traffic import frames

pytestmark = pytest.mark.kernel

PINS = ["prog", "meta", "counters", "config", "rules", "tables_", "hits_"]


def damage(klab, pin: str) -> str:
    """Unpin pin (tables_ and hits_ whatever their layout); its name."""
    att = attachment(klab)
    (name,) = [n for n in att.pins() if n == pin or (pin.endswith("_") and n.startswith(pin))]
    os.unlink(att.pin(name))
    return name


def no_bug(r) -> None:
    assert r.returncode != 70 and "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("pin", PINS)
def test_a_missing_pin_is_reported_then_repaired_and_never_an_internal_error(klab, pin):
    iface = klab.iface
    klab.xdpctl("attach", iface)
    klab.xdpctl("rule", "add", iface, "drop", "--proto", "udp", "--dport", "53")
    klab.send([frames.udp_frame(klab.lab.endpoints(dport=53), b"x")], 7)
    klab.send(frames.build("mix", klab.lab.endpoints()))
    klab.wait_for_total(7 + 21)
    (before,) = klab.xdpctl.json("stats", iface)["interfaces"]
    assert before["rules"][0]["hits"]["packets"] == 7
    prog = attached_prog_id(klab)
    pins = sorted(attachment(klab).pins())

    # Reported, and left as it is.
    name = damage(klab, pin)
    r = klab.xdpctl("doctor", "--json", check=False)
    no_bug(r)
    (state,) = [c for c in json.loads(r.stdout)["checks"] if c["name"] == "state"]
    assert state["status"] == "warn" and f"its {name} pin is missing" in state["detail"], state
    dry = klab.xdpctl.json("clean", "--dry-run")
    assert [(x["action"], x["what"]) for x in dry["leftovers"]] == [
        ("repair", f"{iface}: damaged state: its {name} pin is missing")], dry
    assert name not in attachment(klab).pins()

    # Settled by each command that touches the interface, as the first one after the damage.
    for args in (["status"], ["stats", iface], ["rule", "list", iface], ["export"], ["clean"]):
        if name in attachment(klab).pins():
            damage(klab, pin)
        r = klab.xdpctl(*args, check=False)
        no_bug(r)
        assert r.returncode == 0, (args, r.stderr)
        assert sorted(attachment(klab).pins()) == pins, (args, name)
        if args == ["clean"]:
            assert r.stdout.startswith("repaired ") and f"its {name} pin is missing" in r.stdout, r.stdout
        assert attached_prog_id(klab) == prog
        (now,) = klab.xdpctl.json("stats", iface)["interfaces"]
        assert (now["counters"], now["rules"]) == (before["counters"], before["rules"])  # the same maps
    check_consistent(klab)

    damage(klab, pin)
    r = klab.xdpctl("detach", iface, check=False)
    no_bug(r)
    assert r.returncode == 0, r.stderr
    assert_nothing_left(klab, prog_ids={prog})
