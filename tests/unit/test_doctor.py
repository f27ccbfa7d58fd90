"""doctor's verdicts on capability sets (no privileges needed)."""

from __future__ import annotations

from xdpctl.checks import doctor
from xdpctl.kernel.privileges import CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN


def test_capabilities_decide_the_privileges_check():
    assert doctor._privileges({CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN}).status == "ok"
    assert doctor._privileges({CAP_SYS_ADMIN, CAP_NET_ADMIN}).status == "ok"  # SYS_ADMIN covers BPF
    least = doctor._privileges({CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON})
    assert least.status == "warn" and "CAP_SYS_ADMIN" in least.hint
    none = doctor._privileges(set())
    assert none.status == "fail" and none.detail.endswith("missing CAP_BPF and CAP_NET_ADMIN and CAP_PERFMON")
    assert doctor._privileges({CAP_BPF}).detail.endswith("missing CAP_NET_ADMIN and CAP_PERFMON")
    assert doctor._privileges({CAP_BPF, CAP_NET_ADMIN}).detail.endswith("missing CAP_PERFMON")
