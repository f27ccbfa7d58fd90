"""The Python mirror (xdpctl/datapath/contract.py) must match bpf/xdpctl_kern_user.h."""

from __future__ import annotations

import re
import struct

from xdpctl.datapath import contract
from xdpctl.datapath.program import bpf_dir

HEADER = (bpf_dir() / "xdpctl_kern_user.h").read_text()
C_TYPES = {"__u8": "B", "__u16": "H", "__u32": "I", "__u64": "Q", "char": "s"}


def defines() -> dict[str, str]:
    return dict(re.findall(r"^#define[ \t]+(XDPCTL_\w+)[ \t]+(.+?)[ \t]*(?:/\*.*)?$", HEADER, re.M))


def struct_format(name: str) -> tuple[str, list[str]]:
    """The struct's layout as a struct-module format (nested structs
    expanded, array sizes from the header's defines), and its field names."""
    body = re.search(r"struct %s \{(.*?)\};" % name, HEADER, re.S).group(1)
    d = defines()
    fmt, names = "<", []
    for nested, ctype, field, count in re.findall(
            r"^\s*(struct\s+)?(\w+)\s+(\w+)(?:\[(\w+)\])?;", body, re.M):
        n = int(d.get(count, count)) if count else 1
        if nested:
            inner, _ = struct_format(ctype)
            fmt += inner[1:] * n
        elif C_TYPES[ctype] == "s":
            fmt += f"{n}s"
        else:
            fmt += C_TYPES[ctype] * n
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
    header = {k[len("XDPCTL_VERDICT_"):].lower(): int(v) for k, v in d.items()
              if k.startswith("XDPCTL_VERDICT_") and k != "XDPCTL_VERDICT_MAX"}
    assert header == {name: code for code, name in enumerate(contract.VERDICTS)}
    # Codes are appended, never renumbered: pass and drop keep theirs.
    assert contract.VERDICTS[:2] == ("pass", "drop")
    assert int(d["XDPCTL_VERDICT_MAX"]) == len(contract.VERDICTS)


def test_actions_and_their_switches():
    d = defines()
    for name in ("PASS", "DROP", "REDIRECT", "TX", "REDIRECT_CPU"):
        assert int(d[f"XDPCTL_ACTION_{name}"]) == getattr(contract, f"ACTION_{name}"), name
    for name, bit in contract.ACTS:
        assert d[f"XDPCTL_ACTS_{name}"] == f"(1U << {bit.bit_length() - 1})", name
    for name in ("MAX_TARGETS", "DEVMAP_GEN", "DEVMAP_ENTRIES", "QUEUE_DEFAULT", "QUEUE_MAX"):
        assert int(d[f"XDPCTL_{name}"]) == getattr(contract, name), name
    assert contract.DEVMAP_ENTRIES == 2 * contract.DEVMAP_GEN  # one part per generation
    assert contract.DEVMAP_GEN <= 1 << 16  # struct xdpctl_decision.target is 16 bits
    fmt, names = struct_format("xdpctl_targets")
    assert canon(fmt) == canon(contract.TARGETS.format) and names == ["ifindex", "ifname"]
    for pin in ("DEVMAP", "CPUMAP", "TARGETS"):
        assert d[f"XDPCTL_PIN_{pin}"] == f'"{getattr(contract, "PIN_" + pin)}"'


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


def canon(fmt: str) -> str:
    """Byte arrays as 'B' runs: '16s' and 'B' * 16 lay out the same."""
    return re.sub(r"(\d+)s", lambda m: "B" * int(m.group(1)), fmt)


def test_rule_engine_structs():
    assert canon(struct_format("xdpctl_rule")[0]) == canon(contract.RULE.format)
    assert struct_format("xdpctl_rule_key")[0] == contract.RULE_KEY.format
    assert struct_format("xdpctl_config")[0] == contract.CONFIG.format
    assert struct_format("xdpctl_decision")[0] == contract.DECISION.format
    assert struct_format("xdpctl_layout")[0] == contract.LAYOUT.format
    assert struct_format("xdpctl_decision")[1] == ["order", "slot", "action", "targets", "target"]
    assert struct_format("xdpctl_layout")[1][-1] == "actions"
    for name in ("xdpctl_rule", "xdpctl_config", "xdpctl_decision", "xdpctl_layout", "xdpctl_targets"):
        fmt = struct_format(name)[0]
        assert struct.calcsize(fmt) == struct.calcsize(fmt.replace("<", "@")), name


def test_rule_engine_codes():
    d = defines()
    assert int(d["XDPCTL_ACTION_PASS"]) == contract.ACTION_PASS
    assert int(d["XDPCTL_ACTION_DROP"]) == contract.ACTION_DROP
    for name, bit in contract.KINDS:
        assert d[f"XDPCTL_KIND_{name}"] == f"(1U << {bit.bit_length() - 1})", name
    for name, bit in contract.TRIES:
        assert d[f"XDPCTL_TRIE_{name}_BIT"] == f"(1U << {bit.bit_length() - 1})", name
    assert int(d["XDPCTL_NKINDS"]) == contract.NKINDS == len(contract.KINDS)
    assert int(d["XDPCTL_NTRIES"]) == contract.NTRIES == len(contract.TRIES)
    assert d["XDPCTL_RULE_PRIORITY_SET"] == "(1U << 0)" and contract.RULE_PRIORITY_SET == 1
    assert d["XDPCTL_RULE_ICMP_CODE"] == "(1U << 1)" and contract.RULE_ICMP_CODE == 2
    assert d["XDPCTL_RULE_SRC_V6"] == "(1U << 2)" and contract.RULE_SRC_V6 == 4
    assert d["XDPCTL_RULE_DST_V6"] == "(1U << 3)" and contract.RULE_DST_V6 == 8
    assert int(d["XDPCTL_PRIORITY_DEFAULT"]) == contract.PRIORITY_DEFAULT
    assert int(d["XDPCTL_NO_RULE"].rstrip("U"), 16) == contract.NO_RULE
    assert int(d["XDPCTL_TRIE_CHILD"].rstrip("U"), 16) == contract.TRIE_CHILD
    assert int(d["XDPCTL_TRIE_ROOT"]) == contract.TRIE_ROOT
    assert int(d["XDPCTL_TRIE_BLOCK"]) == contract.TRIE_BLOCK
    assert int(d["XDPCTL_MAX_RULES"]) == contract.MAX_RULES
    assert int(d["XDPCTL_MAX_GENERAL"]) == contract.MAX_GENERAL
    assert d["XDPCTL_SUMMARY_WORDS(w)"] if "XDPCTL_SUMMARY_WORDS(w)" in d else True
    assert "#define XDPCTL_SUMMARY_WORDS(w)   (((w) + 63) / 64)" in HEADER
    assert "#define XDPCTL_CLASS_BYTES(w)     (8 + 8 * (XDPCTL_SUMMARY_WORDS(w) + (w)))" in HEADER
    assert [contract.summary_words(w) for w in (1, 64, 65, 256)] == [1, 1, 2, 4]
    assert contract.class_bytes(16) == 8 + 8 * (1 + 16)
    assert d["XDPCTL_OPT_POLICY_DENY"] == "(1U << 1)" and contract.OPT_POLICY_DENY == 2
    for pin in ("CONFIG", "RULES", "TABLES", "HITS"):
        assert d[f"XDPCTL_PIN_{pin}"] == f'"{getattr(contract, "PIN_" + pin)}"'


def test_meta_round_trip():
    layout = tuple(range(contract.LAYOUT.size // 4))
    meta = contract.Meta(1, 7, 4026531840, 42, 0, 1, contract.OPT_DROP_NON_IP, 1700000000, 0, "eth0", layout)
    assert contract.Meta.unpack(meta.pack()) == meta
    assert meta.mode_name == "native" and meta.drop_non_ip


def test_flow_table_structs_and_codes():
    """The flow table of --established: key, value, settings and the egress
    record, byte for byte, with no hole the Python formats lack."""
    assert canon(struct_format("xdpctl_flow_key")[0]) == canon(contract.FLOW_KEY.format)
    assert struct_format("xdpctl_flow")[0] == contract.FLOW.format
    assert struct_format("xdpctl_flow_config")[0] == contract.FLOW_CONFIG.format
    assert struct_format("xdpctl_egress")[0] == contract.EGRESS.format
    for name in ("xdpctl_flow_key", "xdpctl_flow", "xdpctl_flow_config", "xdpctl_egress"):
        fmt = struct_format(name)[0]
        assert struct.calcsize(fmt) == struct.calcsize(fmt.replace("<", "@")), name
        assert struct.calcsize(fmt) % 8 == 0, name
    d = defines()
    for code, name in enumerate(contract.FLOW_TIMEOUTS):
        assert int(d[f"XDPCTL_FLOW_{name.upper()}"]) == code == getattr(contract, f"FLOW_{name.upper()}")
        assert int(d[f"XDPCTL_FLOW_TIMEOUT_{name.upper()}_S"]) == contract.FLOW_TIMEOUT_DEFAULTS_S[name]
    assert int(d["XDPCTL_FLOW_TIMEOUTS"]) == len(contract.FLOW_TIMEOUTS)
    assert int(d["XDPCTL_FLOW_ENTRIES_DEFAULT"]) == contract.FLOW_ENTRIES_DEFAULT
    assert d["XDPCTL_EGRESS_OWN_QDISC"] == "(1U << 0)" and contract.EGRESS_OWN_QDISC == 1
    assert d["XDPCTL_KIND_ESTABLISHED"] == "(1U << 11)" and contract.KIND_ESTABLISHED == 1 << 11
    for pin in ("FLOWS", "FLOW_CONFIG", "EGRESS", "EGRESS_PROG"):
        assert d[f"XDPCTL_PIN_{pin}"] == f'"{getattr(contract, "PIN_" + pin)}"', pin
    assert d["XDPCTL_EGRESS_PROG_NAME"] == f'"{contract.EGRESS_PROG_NAME}"'
    egress = (bpf_dir() / "egress_kern.c").read_text()
    assert re.search(r"^int %s\(struct __sk_buff \*skb\)" % contract.EGRESS_PROG_NAME, egress, re.M)
    # The kernel's map names are xdpctl_<pin>, in both programs that open them.
    for source in (egress, (bpf_dir() / "xdpctl_kern.c").read_text()):
        assert "xdpctl_flows," in source and "xdpctl_flow_cfg," in source
    assert len("xdpctl_" + contract.PIN_FLOW_CONFIG) <= 15  # the kernel keeps 15 bytes of a name


def test_rate_limits():
    """Rate limits (limit_kern.h): the structs, codes and pins, as contract.py mirrors them."""
    d = defines()
    assert struct_format("xdpctl_limit")[0] == contract.LIMIT.format
    assert canon(struct_format("xdpctl_limit_key")[0]) == canon(contract.LIMIT_KEY.format)
    assert struct_format("xdpctl_bucket")[0] == contract.BUCKET.format
    assert struct_format("xdpctl_limit_stats")[0] == contract.LIMIT_STATS.format
    assert int(d["XDPCTL_LIMIT_FAMILY_CEILING"]) == contract.LIMIT_FAMILY_CEILING
    for name in ("xdpctl_limit", "xdpctl_limit_key", "xdpctl_bucket", "xdpctl_rule", "xdpctl_limit_stats"):
        fmt = struct_format(name)[0]
        assert struct.calcsize(fmt) == struct.calcsize(fmt.replace("<", "@")), name  # no hidden padding
    for name in ("UNIT_NONE", "UNIT_FRAMES", "UNIT_BYTES", "UNIT_BITS", "PER_SRC", "PER_FLOW", "PER_RULE",
                 "LIMIT_K"):
        assert int(d[f"XDPCTL_{name}"]) == getattr(contract, name), name
    for name in ("LIMIT_ON", "LIMIT_OF_BYTES", "LIMIT_CEILING", "FEAT_LIMITS"):
        assert d[f"XDPCTL_{name}"] == f"(1U << {getattr(contract, name).bit_length() - 1})", name
    for pin in ("LIMITS", "BUCKETS", "LIMIT_STATS"):
        assert d[f"XDPCTL_PIN_{pin}"] == f'"{getattr(contract, "PIN_" + pin)}"'
    assert canon(struct_format("xdpctl_rule")[0]).endswith("QQQIIHH" + "B" * 12)


def test_bans():
    d = defines()
    assert canon(struct_format("xdpctl_ban_key")[0]) == canon(contract.BAN_KEY.format)
    assert struct_format("xdpctl_ban")[0] == contract.BAN.format
    assert d["XDPCTL_FEAT_BANS"] == f"(1U << {contract.FEAT_BANS.bit_length() - 1})"
    assert int(d["XDPCTL_BAN_ENTRIES"]) == contract.BAN_ENTRIES
    assert d["XDPCTL_PIN_BANS"] == f'"{contract.PIN_BANS}"'
    for name in ("xdpctl_ban_key", "xdpctl_ban"):
        fmt = struct_format(name)[0]
        assert struct.calcsize(fmt) == struct.calcsize(fmt.replace("<", "@")), name
def test_trace_structs_and_codes():
    d = defines()
    assert struct_format("xdpctl_trace_config")[0] == contract.TRACE_CONFIG.format
    assert struct_format("xdpctl_trace_stats")[0] == contract.TRACE_STATS.format
    assert struct_format("xdpctl_trace_record")[0] == contract.TRACE_RECORD.format
    for name in ("xdpctl_trace_config", "xdpctl_trace_stats", "xdpctl_trace_record"):
        assert struct.calcsize(struct_format(name)[0]) % 8 == 0, name  # explicit padding, no hole at the end
    for code, name in enumerate(contract.TRACE_BY):
        assert int(d["XDPCTL_TRACE_BY_" + name.replace("drop-", "").replace("-", "_").upper()]) == code
    assert int(d["XDPCTL_TRACE_ANY_SLOT"], 16) == contract.TRACE_ANY_SLOT
    assert int(d["XDPCTL_TRACE_CAP_MAX"]) == contract.TRACE_CAP_MAX
    assert int(d["XDPCTL_TRACE_RING_BYTES"]) == contract.TRACE_RING_BYTES
    for pin in ("TRACE_CONFIG", "TRACE_STATS", "TRACE_RING", "TRACE_PROG"):
        assert d[f"XDPCTL_PIN_{pin}"] == f'"{getattr(contract, "PIN_" + pin)}"', pin
