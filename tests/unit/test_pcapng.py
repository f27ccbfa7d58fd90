"""The pcapng writer (xdpctl/observe/pcapng.py) and the trace's comments,
read back by tshark (Debian's package) and by scapy's pcapng reader: two
readings that share no code with the writer."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess

import pytest

from xdpctl.observe import pcapng
from xdpctl.observe.capture import comment

FRAMES = [bytes(range(60)), b"\x02" * 61, b"\xff" * 14 + b"odd" * 11]  # lengths 60, 61, 47: every padding


def _file(tmp_path):
    buf = io.BytesIO()
    w = pcapng.Writer(buf, "xdpctl test")
    assert w.add_interface("veth-a", 4096, "xdpctl trace") == 0
    assert w.add_interface("veth-b", 128) == 1
    for i, frame in enumerate(FRAMES):
        w.packet(i % 2, 1_700_000_000_123_456_789 + i, frame, len(frame) + 100 * i, f"note {i} é")
    w.packet(1, 1_700_000_001_000_000_000, FRAMES[0], 60)  # no comment: no options at all
    path = tmp_path / "t.pcapng"
    path.write_bytes(buf.getvalue())
    return path, buf.getvalue()


def test_blocks_are_padded_and_lengths_agree(tmp_path):
    _path, raw = _file(tmp_path)
    off, types = 0, []
    while off < len(raw):
        btype, total = struct.unpack_from("=II", raw, off)
        assert total % 4 == 0 and struct.unpack_from("=I", raw, off + total - 4)[0] == total
        types.append(btype)
        off += total
    assert off == len(raw)
    assert types == [pcapng.SHB, pcapng.IDB, pcapng.IDB] + [pcapng.EPB] * 4


def test_packets_come_after_the_interfaces():
    w = pcapng.Writer(io.BytesIO(), "x")
    w.add_interface("a", 64)
    with pytest.raises(ValueError):
        w.packet(1, 0, b"x", 1)
    w.packet(0, 0, b"x", 1)
    with pytest.raises(ValueError):
        w.add_interface("b", 64)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (scripts/setup.sh installs it)")
def test_tshark_reads_every_field(tmp_path):
    path, _ = _file(tmp_path)
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|",
                          "-e", "frame.interface_name", "-e", "frame.len", "-e", "frame.cap_len",
                          "-e", "frame.time_epoch", "-e", "frame.comment"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert len(out) == 4
    for i, line in enumerate(out[:3]):
        name, length, caplen, epoch, note = line.split("|")
        assert name == ("veth-a", "veth-b")[i % 2]
        assert (int(length), int(caplen)) == (len(FRAMES[i]) + 100 * i, len(FRAMES[i]))
        whole, frac = epoch.split(".")
        assert int(whole) * 10**9 + int(frac.ljust(9, "0")[:9]) == 1_700_000_000_123_456_789 + i  # to the ns
        assert note == f"note {i} é"
    assert out[3].split("|")[4] == ""


def test_scapy_reads_the_frames_and_comments(tmp_path):
    from scapy.utils import PcapNgReader

    path, _ = _file(tmp_path)
    with PcapNgReader(str(path)) as reader:
        packets = list(reader)
    assert [bytes(p) for p in packets] == FRAMES + [FRAMES[0]]
    assert [p.comment for p in packets[:3]] == [f"note {i} é".encode() for i in range(3)]
    assert packets[0].time == pytest.approx(1_700_000_000.123456789, abs=1e-6)


def test_comment_names_verdict_decider_and_class():
    assert comment("drop", "rule", 3, "ipv4/udp") == "verdict=drop rule=3 class=ipv4/udp"
    assert comment("pass", "policy", None, "arp") == "verdict=pass rule=policy class=arp"
    assert comment("drop", "drop-non-ip", None, "other") == "verdict=drop rule=drop-non-ip class=other"
    assert comment("redirect", "rule", None, "ipv6/tcp") == "verdict=redirect rule=? class=ipv6/tcp"
