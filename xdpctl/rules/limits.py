"""Rate limits of a rule (issue 13): what --over, --burst, --per, --table,
--ceiling and --block say, whether they hold together, and the token bucket
arithmetic the datapath does (bpf/limit_kern.h), in integers.

Semantics are nftables' `limit rate over`: a limited rule matches a frame
only when the frame goes over its bucket's rate; a frame within the rate
does not match it and goes on to the next rule, then the policy.

Pure: no kernel, no maps. Every check raises BadInput with one sentence.

The bucket, in integers (the same in C and here). A rate of N units per
period P seconds (a unit is a frame, a byte or a bit) is kept in tokens
where one unit costs P*1e9/g tokens and every nanosecond adds N/g tokens,
g = gcd(N, P*1e9): both are whole, so the arithmetic is exact. The bucket
holds burst units (its capacity in tokens) and starts full. A frame costs
one unit, or its length in bytes (times 8 for a bit rate); it is within the
rate when the bucket holds its cost, which it then takes; otherwise it is
over, and takes nothing (as nftables). The time since the last frame is
capped at fill_ns, the time an empty bucket takes to fill, so a long idle
cannot overflow the refill: every product stays below 2**63.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..datapath import contract
from ..errors import BadInput

NS = 1_000_000_000
PERIODS = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
PERIOD_NAMES = {1: "s", 60: "min", 3600: "h"}
MULTIPLIERS = {"": 1, "k": 1000, "m": 1000_000, "g": 1000_000_000}
# The longest frame XDP hands a program (a frame's length is 16 bits).
FRAME_BYTES_MAX = 65535
# A byte rate's default burst is one second of it, but at least one full
# Ethernet frame: a bucket smaller than a frame would call every such frame over.
FRAME_BYTES_TYPICAL = 1514
# Every product in the bucket arithmetic stays below this (signed 64 bits).
TOKENS_MAX = 1 << 62

PER_SRC, PER_PREFIX, PER_FLOW, PER_RULE = "src", "prefix", "flow", "rule"
TABLE_DEFAULT = 65536
TABLE_MIN = 16
TABLE_MAX = 1 << 22  # 4,194,304 keys: ~400 MB of LRU entries, the most one rule may take
# With no --ceiling, the frames of sources not in the table (new, or
# evicted: what a spoofed flood is made of) share a ceiling of this many
# times the rule's rate; see docs/rules.md ("Spoofed sources").
CEILING_FACTOR = 64
V6_PREFIX_DEFAULT = 64  # src/N on a rule of both families: IPv6 sources by /64
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
BLOCK_MAX_S = 3650 * 86400  # ten years: longer is a typo, and its nanoseconds near 2**63

LIMIT_KEYS = ("over", "burst", "per", "table", "ceiling", "block")

_FRAME_RATE = re.compile(r"^([0-9]+)\s*/\s*([a-z]+)$")
_BYTE_RATE = re.compile(r"^([0-9]+)\s*([kmg]?)(bit|bytes)\s*/\s*([a-z]+)$")
_DURATION_PART = re.compile(r"([0-9]+)([smhd])")
_DECIMAL = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class Rate:
    """N units per period seconds. unit: 'frames', 'bytes' or 'bits'
    (amount is in bytes or bits, the multiplier applied)."""

    amount: int
    period: int
    unit: str = "frames"
    shown: str = field(default="", compare=False)  # as written back: 1000/s, 20mbit/s

    @property
    def of_bytes(self) -> bool:
        return self.unit != "frames"

    @property
    def per_byte(self) -> int:
        """Units one byte of a frame is worth (a bit rate counts 8)."""
        return 8 if self.unit == "bits" else 1

    def __str__(self) -> str:
        return self.shown or _show(self.amount, self.period, self.unit)

    def times(self, factor: int) -> "Rate":
        return Rate(self.amount * factor, self.period, self.unit)


def _show(amount: int, period: int, unit: str) -> str:
    if unit == "frames":
        return f"{amount}/{PERIOD_NAMES[period]}"
    word = "bit" if unit == "bits" else "bytes"
    for prefix in ("g", "m", "k"):
        if amount % MULTIPLIERS[prefix] == 0:
            return f"{amount // MULTIPLIERS[prefix]}{prefix}{word}/s"
    return f"{amount}{word}/s"


def parse_rate(text, what: str = "--over") -> Rate:
    """'1000/s', '30/min', '5/h', '20mbit/s', '10kbytes/s' (k, m, g are 1000s)."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise BadInput(f"{what} must be a rate like 1000/s or 20mbit/s, not {text!r}")
    s = str(text).strip().lower()
    hint = "use N/s, N/min, N/h (frames) or N[k|m|g]bit/s, N[k|m|g]bytes/s (k, m, g: thousands)"
    m = _FRAME_RATE.match(s)
    if m:
        amount, period_name = int(m.group(1)), m.group(2)
        if period_name not in PERIODS:
            raise BadInput(f"{what} {text!r}: {period_name!r} is not a unit of time; {hint}")
        unit, period = "frames", PERIODS[period_name]
    else:
        m = _BYTE_RATE.match(s)
        if not m:
            raise BadInput(f"{what} {text!r} is not a rate; {hint}")
        if PERIODS.get(m.group(4)) != 1:
            raise BadInput(f"{what} {text!r}: byte and bit rates are per second (/s); {hint}")
        amount = int(m.group(1)) * MULTIPLIERS[m.group(2)]
        unit, period = ("bits" if m.group(3) == "bit" else "bytes"), 1
    if amount == 0:
        raise BadInput(f"{what} {text!r} is a rate of 0, which every frame is over: use a drop rule "
                       "without --over")
    rate = Rate(amount, period, unit)
    Bucket.of(rate, default_burst(rate), what)  # refuse what overflows the arithmetic now
    return Rate(amount, period, unit, _show(amount, period, unit))


def default_burst(rate: Rate) -> int:
    """One second of the rate (in its units), at least one frame."""
    second = -(-rate.amount // rate.period)  # rounded up
    if rate.of_bytes:
        return max(second, FRAME_BYTES_TYPICAL * rate.per_byte)
    return max(second, 1)


def parse_burst(text, rate: Rate, what: str = "--burst") -> int:
    """Frames for a frame rate; bytes for a byte rate (bits for a bit rate)."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise BadInput(f"{what} must be a whole number, not {text!r}")
    s = str(text).strip()
    if not _DECIMAL.match(s):
        unit = "frames" if rate.unit == "frames" else rate.unit
        raise BadInput(f"{what} must be a whole number of {unit} (the rate's unit); got {text!r}")
    value = int(s)
    if value == 0:
        raise BadInput(f"{what} 0 lets no frame through ever; give at least 1, or leave it out for one "
                       "second of the rate")
    Bucket.of(rate, value, what)
    return value


@dataclass(frozen=True)
class Per:
    """What a rule's buckets are keyed by: 'src' (v4 and v6 are the prefix
    lengths: 32 and 128 for whole addresses; 0 for the family a src/N rule
    of one family does not match), 'flow' or 'rule'."""

    kind: str = PER_SRC
    v4: int = 32
    v6: int = 128

    def __str__(self) -> str:
        if self.kind != PER_SRC:
            return self.kind
        if (self.v4, self.v6) == (32, 128):
            return "src"
        if self.v4 == 0:
            return f"src/{self.v6}"  # an IPv6 rule's
        if self.v6 == 0:
            return f"src/{self.v4}"  # an IPv4 rule's
        return f"src/{self.v4},{self.v6}"


PER_DEFAULT = Per()


def parse_per(text, family: int | None, what: str = "--per") -> Per:
    """src, src/N (IPv4 /N, or IPv6 /N on an IPv6 rule), src/N,M (IPv4 /N,
    IPv6 /M), flow, rule. family: the rule's (4, 6) or None for both."""
    if not isinstance(text, str):
        raise BadInput(f"{what} must be src, src/N, flow or rule, not {text!r}")
    s = text.strip().lower()
    if s in (PER_FLOW, PER_RULE, PER_SRC):
        return Per(s)
    m = re.fullmatch(r"src/([0-9]+)(?:,([0-9]+))?", s)
    if not m:
        raise BadInput(f"{what} {text!r} is not src, src/N (a source prefix), src/N,M (IPv4 /N, IPv6 /M), "
                       "flow or rule")
    first = int(m.group(1))
    if m.group(2) is not None:
        second = int(m.group(2))
        if not 1 <= first <= 32 or not 1 <= second <= 128:
            raise BadInput(f"{what} {text}: src/N,M takes an IPv4 length N of 1-32 and an IPv6 length M "
                           "of 1-128")
        if family == 4 or family == 6:
            raise BadInput(f"{what} {text}: the rule matches IPv{family} only; write src/"
                           f"{first if family == 4 else second}")
        return Per(PER_SRC, first, second)
    if family == 6:
        if not 1 <= first <= 128:
            raise BadInput(f"{what} {text}: an IPv6 prefix is 1 to 128 bits")
        return Per(PER_SRC, 0, first)
    if not 1 <= first <= 32:
        hint = (" (on a rule of both families, src/N,M gives IPv6 sources their own /M)"
                if first <= 128 and family is None else "")
        raise BadInput(f"{what} {text}: an IPv4 prefix is 1 to 32 bits{hint}")
    return Per(PER_SRC, first, 0 if family == 4 else V6_PREFIX_DEFAULT)


def parse_table(text, what: str = "--table") -> int:
    if isinstance(text, bool) or not isinstance(text, (str, int)) or not _DECIMAL.match(str(text).strip()):
        raise BadInput(f"{what} must be a number of keys from {TABLE_MIN} to {TABLE_MAX:,}; got {text!r}")
    value = int(str(text).strip())
    if not TABLE_MIN <= value <= TABLE_MAX:
        raise BadInput(f"{what} must be from {TABLE_MIN} to {TABLE_MAX:,} keys (each takes ~100 bytes of "
                       f"kernel memory); got {value:,}")
    return value


def parse_duration(text, what: str = "--block") -> int:
    """Seconds, from '30s', '10m', '1h', '2d' or '1h30m' (a bare number is seconds)."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise BadInput(f"{what} must be a duration like 10m or 1h, not {text!r}")
    s = str(text).strip().lower()
    if _DECIMAL.match(s):
        seconds = int(s)
    elif s and _DURATION_PART.sub("", s) == "":
        seconds = sum(int(n) * DURATION_UNITS[u] for n, u in _DURATION_PART.findall(s))
    else:
        raise BadInput(f"{what} {text!r} is not a duration; write it like 30s, 10m, 1h, 2d or 1h30m")
    if seconds == 0:
        raise BadInput(f"{what} {text!r} is no time at all; give at least 1s")
    if seconds > BLOCK_MAX_S:
        raise BadInput(f"{what} {text!r} is longer than 3650 days, the longest xdpctl keeps a ban")
    return seconds


def show_duration(seconds: int) -> str:
    """The shortest exact form: 600 -> '10m', 5400 -> '1h30m'."""
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            n, seconds = divmod(seconds, size)
            out.append(f"{n}{unit}")
    return "".join(out) or "0s"


@dataclass(frozen=True)
class Limit:
    """A rule's rate limit. ceiling None: none (--ceiling none); burst is
    in the rate's units; block is seconds (0: no ban)."""

    rate: Rate
    burst: int
    per: Per = PER_DEFAULT
    table: int = TABLE_DEFAULT
    ceiling: Rate | None = None
    block: int = 0

    @property
    def keyed(self) -> bool:
        """Does the rule keep a table of buckets (not one bucket for the rule)?"""
        return self.per.kind != PER_RULE

    def bucket(self) -> "Bucket":
        return Bucket.of(self.rate, self.burst)

    def ceiling_bucket(self) -> "Bucket | None":
        if self.ceiling is None:
            return None
        return Bucket.of(self.ceiling, default_burst(self.ceiling))

    def describe(self) -> dict:
        """As JSON, rule list and xdpctl.toml write it (the file's keys)."""
        out: dict = {"over": str(self.rate), "burst": self.burst, "per": str(self.per)}
        if self.keyed:
            out["table"] = self.table
            out["ceiling"] = str(self.ceiling) if self.ceiling is not None else "none"
        if self.block:
            out["block"] = show_duration(self.block)
        return out


UNIT_CODES = {"frames": contract.UNIT_FRAMES, "bytes": contract.UNIT_BYTES, "bits": contract.UNIT_BITS}
UNIT_NAMES = {v: k for k, v in UNIT_CODES.items()}
PER_CODES = {PER_SRC: contract.PER_SRC, PER_FLOW: contract.PER_FLOW, PER_RULE: contract.PER_RULE}
PER_NAMES = {v: k for k, v in PER_CODES.items()}
NO_LIMIT_FIELDS = (0, 0, 0, 0, 0, 0, 0, contract.UNIT_NONE, contract.UNIT_NONE, 0, 0, 0, b"")


def fields(limit: "Limit | None") -> tuple:
    """The limit as struct xdpctl_rule's appended fields (ABI 4), in order."""
    if limit is None:
        return NO_LIMIT_FIELDS
    c = limit.ceiling
    return (limit.rate.amount, limit.burst, c.amount if c else 0, limit.table, limit.block, limit.rate.period,
            c.period if c else 0, UNIT_CODES[limit.rate.unit], UNIT_CODES[c.unit] if c else contract.UNIT_NONE,
            PER_CODES[limit.per.kind], limit.per.v4, limit.per.v6, b"")


def from_fields(values: tuple) -> "Limit | None":
    """The inverse of fields(): None for a rule without a limit."""
    over, burst, ceiling, table, block, over_period, ceiling_period, over_unit, ceiling_unit, per, v4, v6 = values[:12]
    if over_unit == contract.UNIT_NONE:
        return None
    rate = Rate(over, over_period, UNIT_NAMES[over_unit])
    rate = Rate(rate.amount, rate.period, rate.unit, _show(rate.amount, rate.period, rate.unit))
    ceil = None
    if ceiling_unit != contract.UNIT_NONE:
        ceil = Rate(ceiling, ceiling_period, UNIT_NAMES[ceiling_unit])
    kind = PER_NAMES[per]
    return Limit(rate, burst, Per(kind, v4, v6) if kind == PER_SRC else Per(kind), table, ceil, block)


def datapath(limit: "Limit | None") -> bytes:
    """struct xdpctl_limit for the limits map (all zero: no limit)."""
    if limit is None:
        return bytes(contract.LIMIT.size)
    b = limit.bucket()
    flags = contract.LIMIT_ON | (contract.LIMIT_OF_BYTES if b.of_bytes else 0)
    c = limit.ceiling_bucket() if limit.keyed else None
    if c is not None:
        flags |= contract.LIMIT_CEILING
    return contract.LIMIT.pack(b.refill, b.cost, b.capacity, b.fill_ns, flags, PER_CODES[limit.per.kind],
                               limit.per.v4, limit.per.v6, 0, *((c.refill, c.cost, c.capacity, c.fill_ns) if c
                                                                else (0, 0, 0, 0)), limit.block * NS)


def default_ceiling(rate: Rate) -> Rate:
    return rate.times(CEILING_FACTOR)


def parse_limit(values: dict, family: int | None, label) -> Limit | None:
    """A Limit from option values (None for options not given); None when
    there is no --over. label names the options in messages."""
    L = label  # noqa: N806
    given = {k: v for k, v in values.items() if k in LIMIT_KEYS and v is not None}
    if "over" not in given:
        if given:
            first = next(k for k in LIMIT_KEYS if k in given)
            raise BadInput(f"{L(first)} needs {L('over')} (the rate a frame must go over for the rule to match)")
        return None
    rate = parse_rate(given["over"], L("over"))
    burst = parse_burst(given["burst"], rate, L("burst")) if "burst" in given else default_burst(rate)
    per = parse_per(given["per"], family, L("per")) if "per" in given else PER_DEFAULT
    if per.kind == PER_RULE:
        for key in ("table", "ceiling"):
            if key in given:
                raise BadInput(f"{L(key)} is for a table of buckets; {L('per')} rule keeps one bucket for the rule")
    table = parse_table(given["table"], L("table")) if "table" in given else TABLE_DEFAULT
    ceiling: Rate | None = None
    if per.kind != PER_RULE:
        text = given.get("ceiling")
        if isinstance(text, str) and text.strip().lower() == "none":
            ceiling = None
        elif text is not None:
            ceiling = parse_rate(text, L("ceiling"))
            if ceiling.of_bytes != rate.of_bytes:
                raise BadInput(f"{L('ceiling')} {text} must count what {L('over')} {rate} counts "
                               f"({'bytes or bits' if rate.of_bytes else 'frames'})")
            if _per_ns(ceiling) < _per_ns(rate):
                raise BadInput(f"{L('ceiling')} {ceiling} is below {L('over')} {rate}: one source could "
                               f"never reach its own limit; give at least {rate}, or none")
        else:
            ceiling = default_ceiling(rate)
    block = parse_duration(given["block"], L("block")) if "block" in given else 0
    return Limit(rate, burst, per, table, ceiling, block)


def _per_ns(rate: Rate) -> float:
    """For comparing rates of one kind: frames, or bits, per second."""
    return rate.amount * (8 if rate.unit == "bytes" else 1) / rate.period


# --- the bucket ----------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    """The integers the datapath's bucket runs on (struct xdpctl_limit)."""

    refill: int    # tokens per nanosecond
    cost: int      # tokens per unit: a frame, or a byte of a byte/bit rate
    capacity: int  # tokens the bucket holds (burst units)
    fill_ns: int   # nanoseconds an empty bucket takes to fill
    of_bytes: bool

    @classmethod
    def of(cls, rate: Rate, burst: int, what: str = "--over") -> "Bucket":
        period_ns = rate.period * NS
        g = math.gcd(rate.amount, period_ns)
        refill = rate.amount // g
        unit = period_ns // g
        cost = unit * rate.per_byte  # a byte of a bit rate is 8 bits
        capacity = burst * unit
        frame_max = cost * (FRAME_BYTES_MAX if rate.of_bytes else 1)
        if capacity >= TOKENS_MAX or frame_max >= TOKENS_MAX or refill >= TOKENS_MAX:
            raise BadInput(f"{what} {_show(rate.amount, rate.period, rate.unit)} with a burst of {burst:,} is "
                           "beyond the bucket's 64-bit arithmetic; give a rounder rate or a smaller burst")
        fill_ns = -(-capacity // refill)
        return cls(refill, cost, capacity, fill_ns, rate.of_bytes)

    def frame_cost(self, length: int) -> int:
        return self.cost * length if self.of_bytes else self.cost


@dataclass
class BucketState:
    """One key's bucket, as the LRU entry holds it; the reference model of
    limit_kern.h's arithmetic (unit tests check both against exact counts)."""

    tokens: int
    last_ns: int

    @classmethod
    def new(cls, bucket: Bucket, now_ns: int) -> "BucketState":
        return cls(bucket.capacity, now_ns)

    def over(self, bucket: Bucket, now_ns: int, length: int) -> bool:
        """Refill to now, then take the frame's cost if it fits: True when
        the frame goes over the rate (and takes nothing)."""
        elapsed = max(0, now_ns - self.last_ns)  # another CPU may have stamped a later time
        elapsed = min(elapsed, bucket.fill_ns)  # a long idle fills the bucket, and no more
        self.tokens = min(bucket.capacity, self.tokens + elapsed * bucket.refill)
        self.last_ns = max(self.last_ns, now_ns)
        cost = bucket.frame_cost(length)
        if self.tokens >= cost:
            self.tokens -= cost
            return False
        return True
