"""stats is cheap: it loads neither the compiler (BCC) nor scapy."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel

PROBE = """
import atexit, sys
def report():
    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'bcc', 'scapy'})
    sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')
atexit.register(report)
from xdpctl.cli import main
main(sys.argv[1:])
"""


def test_stats_imports_neither_bcc_nor_scapy(klab):
    klab.xdpctl("attach", klab.iface)
    r = subprocess.run([sys.executable, "-c", PROBE, "--netns", klab.lab.host_netns, "stats", "--json"],
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert '"managed": true' in r.stdout
    assert "HEAVY=\n" in r.stderr


def test_attach_warns_that_dropping_arp_cuts_neighbour_resolution(klab):
    r = klab.xdpctl("attach", klab.iface, "--drop-non-ip")
    assert "drops ARP" in r.stderr and klab.lab.host4 in r.stderr
    r = klab.xdpctl("attach", klab.iface)  # count only: no warning
    assert "drops ARP" not in r.stderr
