"""The Python mirror (xdpctl/contract.py) must match bpf/xdpctl_kern_user.h."""

from __future__ import annotations

import re
import struct

from xdpctl import contract
from xdpctl.program import bpf_dir

HEADER = (bpf_dir() / "xdpctl_kern_user.h").read_text()
C_TYPES = {"__u8": "B", "__u16": "H", "__u32": "I", "__u64": "Q", "char": "s"}


def defines() -> dict[str, str]:
    return dict(re.findall(r"^#define[ \t]+(XDPCTL_\w+)[ \t]+(.+?)[ \t]*(?:/\*.*)?$", HEADER, re.M))


def struct_format(name: str) -> tuple[str, list[str]]:
    body = re.search(r"struct %s \{(.*?)\};" % name, HEADER, re.S).group(1)
    fmt, names = "<", []
    for ctype, field, count in re.findall(r"^\s*(\w+)\s+(\w+)(?:\[(\d+)\])?;", body, re.M):
        code = C_TYPES[ctype]
        fmt += (count or "") + code if code == "s" else code * int(count or 1)
        names.append(field)
    return fmt, names


def test_abi_version():
    assert int(defines()["XDPCTL_ABI_VERSION"]) == contract.ABI_VERSION


def test_class_codes_match_header_in_order():
    d = defines()
    header_classes = {k: int(v) for k, v in d.items() if k.startswith("XDPCTL_CLASS_") and k != "XDPCTL_CLASS_MAX"}
    assert sorted(header_classes.values()) == list(range(len(contract.CLASSES)))
    for macro, code in header_classes.items():
        name = macro[len("XDPCTL_CLASS_"):].lower().replace("_", "/", 1)
        assert contract.CLASSES[code] == name, macro
    assert int(d["XDPCTL_CLASS_MAX"]) == len(contract.CLASSES)


def test_ip_classes_sort_below_arp():
    arp = contract.CLASS_CODES["arp"]
    for name, code in contract.CLASS_CODES.items():
        assert (code < arp) == name.startswith(("ipv4/", "ipv6/")), name


def test_verdicts():
    d = defines()
    assert int(d["XDPCTL_VERDICT_PASS"]) == contract.VERDICTS.index("pass")
    assert int(d["XDPCTL_VERDICT_DROP"]) == contract.VERDICTS.index("drop")
    assert int(d["XDPCTL_VERDICT_MAX"]) == len(contract.VERDICTS)


def test_class_counters_layout():
    body = re.search(r"struct xdpctl_class_counters \{(.*?)\};", HEADER, re.S).group(1)
    fields = re.findall(r"^\s*struct (\w+) (\w+)\[(\w+)\];", body, re.M)
    assert fields == [("xdpctl_counter", "verdict", "XDPCTL_VERDICT_MAX")]
    assert contract.CLASS_COUNTERS.size == contract.COUNTER.size * len(contract.VERDICTS)
    assert contract.CLASS_COUNTERS.format == "<" + contract.COUNTER.format[1:] * len(contract.VERDICTS)
    source = (bpf_dir() / "xdpctl_kern.c").read_text()
    assert re.search(r"struct xdpctl_class_counters, xdpctl_counters,\s+XDPCTL_CLASS_MAX", source)


def test_modes_and_options():
    d = defines()
    for name, code in contract.MODES.items():
        assert int(d[f"XDPCTL_MODE_{name.upper()}"]) == code
    assert d["XDPCTL_OPT_DROP_NON_IP"] == "(1U << 0)"
    assert contract.OPT_DROP_NON_IP == 1


def test_counter_struct_layout():
    fmt, names = struct_format("xdpctl_counter")
    assert names == ["packets", "bytes"]
    assert struct.calcsize(fmt) == contract.COUNTER.size
    assert fmt == contract.COUNTER.format


def test_meta_struct_layout():
    fmt, names = struct_format("xdpctl_meta")
    assert tuple(names) == contract.META_FIELDS
    assert fmt == contract.META.format
    # Explicit padding: the C layout has no hole the Python format lacks.
    assert struct.calcsize(fmt) == struct.calcsize(fmt.replace("<", "@"))


def test_pin_and_program_names():
    d = defines()
    assert d["XDPCTL_PIN_COUNTERS"] == f'"{contract.PIN_COUNTERS}"'
    assert d["XDPCTL_PIN_META"] == f'"{contract.PIN_META}"'
    assert d["XDPCTL_PIN_PROG"] == f'"{contract.PIN_PROG}"'
    assert d["XDPCTL_PROG_NAME"] == f'"{contract.PROG_NAME}"'
    source = (bpf_dir() / "xdpctl_kern.c").read_text()
    assert re.search(r"^int %s\(struct xdp_md \*ctx\)" % contract.PROG_NAME, source, re.M)
    # The kernel's map names are xdpctl_<pin>, declared in the main file.
    assert "xdpctl_counters," in source and "xdpctl_meta," in source


def test_meta_round_trip():
    meta = contract.Meta(1, 7, 4026531840, 42, 0, 1, contract.OPT_DROP_NON_IP, 1700000000, 0, "eth0")
    assert contract.Meta.unpack(meta.pack()) == meta
    assert meta.mode_name == "native" and meta.drop_non_ip
