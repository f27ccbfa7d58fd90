"""xdpctl/datapath/classify.py against an independent reading of
docs/classification.md (tests/doc_classes.py), on every truncation of frames
with IPv6 extension headers of several lengths and of the mix profile's frames.
The kernel's program is held to the same reading in tests/kernel/test_prog_run.py."""

from __future__ import annotations

import pytest

from doc_classes import doc_class, extension_corpus, ipv6_frame
from xdpctl.datapath import classify
from xdpctl.traffic import frames

EP = frames.Endpoints("02:00:00:00:00:02", "02:00:00:00:00:01", "198.18.0.2", "198.18.0.1", "fd00::2", "fd00::1")


def test_the_corpus_covers_every_length_class():
    sizes = {len(f) for f in extension_corpus()}
    assert len(extension_corpus()) >= 40 and max(sizes) > 2048


@pytest.mark.parametrize("frame", extension_corpus(), ids=lambda f: f[54:56].hex() + f"-{len(f)}")
def test_every_truncation_of_extension_header_frames(frame):
    for n in range(len(frame) + 1):
        assert classify.classify(frame[:n]) == doc_class(frame[:n]), (n, frame[:n].hex())


def test_every_truncation_of_the_mix_profile():
    for frame in frames.build("mix", EP):
        for n in range(len(frame) + 1):
            assert classify.classify(frame[:n]) == doc_class(frame[:n]), (n, frame[:n].hex())


def test_a_routing_header_cut_after_its_first_eight_bytes_is_ipv6_other():
    """The defect of issue 12 (17): a 24-byte routing header cut short after
    8 bytes, followed by UDP, was counted as ipv6/udp."""
    frame = ipv6_frame([(43, 24)], 17, bytes(12))
    cut = frame[: 14 + 40 + 8 + 12]  # 8 bytes of the header, then 12 more: 4 short of its end
    assert doc_class(cut) == "ipv6/other"
    assert classify.classify(cut) == "ipv6/other"
    assert classify.classify(frame) == "ipv6/udp"


def test_the_reading_can_tell_classes_apart():
    """The reading is not a constant: whole frames give their upper layer."""
    got = {doc_class(ipv6_frame([(0, 8)], upper, b"\0" * 20)) for upper in (6, 17, 58, 59)}
    assert got == {"ipv6/tcp", "ipv6/udp", "ipv6/icmpv6", "ipv6/other"}
