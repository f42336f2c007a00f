"""Hostile inputs for the fuzz suite, what the library should make of each, and a tally.

Each field kind has a strategy of edge values (``*_values``) and an oracle (``expect_*``) that
says, independently of the library's code, whether the value must be refused with a
ValidationError or accepted, and then what must read back. The oracles encode the documented
decisions: lone surrogates and NUL refused, size limits, tokens ≤ 10**12 (whole numbers only),
cost ≤ 1e9 (finite, -0.0 stored as 0.0), timestamps normalised to UTC inside years 1..9999,
JSON without NaN, NUL or lone surrogates, at most 100 levels deep and 1 MB.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from orchestrator_db import DatabaseManager
from orchestrator_db.jsoncodec import dumps_json

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))


def fuzz_settings(share: float = 1.0) -> settings:
    """Reproducible settings for CI; ``FUZZ_EXAMPLES`` raises the count locally."""
    return settings(
        max_examples=max(1, int(EXAMPLES * share)), deadline=None, derandomize=True,
        database=None, print_blob=False,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


@dataclass
class Engines:
    """The same operations go to both, SQLite first."""

    sqlite: DatabaseManager
    postgresql: DatabaseManager
    #: unique values already stored (orchestrator agent names, imported ids), across examples
    taken: set[tuple[str, str]] = field(default_factory=set)

    def __iter__(self) -> Iterator[tuple[str, DatabaseManager]]:
        yield "sqlite", self.sqlite
        yield "postgresql", self.postgresql


# the tally: cases tried per category, printed at the end of the run (conftest) ---------------
TALLY: Counter[tuple[str, str]] = Counter()


def count(category: str, outcome: str, n: int = 1) -> None:
    """Count ``n`` cases of ``category`` that ended in ``outcome`` (accepted, refused, ...)."""
    TALLY[(category, outcome)] += n


class _ShortRepr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxstring = 8, 12, 12, 160
        self.maxlong, self.maxother = 60, 100

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # more digits than int → str allows
            return f"<int of {x.bit_length()} bits>"


_short_repr = _ShortRepr()


def show(value: Any, limit: int = 400) -> str:
    """A short ``repr`` for failure messages (inputs may hold 10 MB strings or 5,000-digit ints)."""
    text = _short_repr.repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _huge() -> int:
    return 10**5000


# A 5,001-digit int: beyond sys.get_int_max_str_digits(), so str() and repr() of it raise.
huge_int = st.builds(_huge)

# limits, as documented in models.py --------------------------------------------------------
NAME, SHORT, MESSAGE, CONTENT = 200, 1_000, 1_000_000, 10_000_000
MAX_TOKENS, MAX_COST = 10**12, 1e9
JSON_DEPTH, JSON_BYTES = 100, 1_000_000


class Refused:
    """The oracle's verdict: a ValidationError on both engines."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return f"Refused({self.why!r})"


@dataclass(frozen=True)
class Accepted:
    """The oracle's verdict: stored, and ``value`` reads back."""

    value: Any


Verdict = Accepted | Refused

# text ---------------------------------------------------------------------------------------
SPECIALS = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\udc80", "\U0010ffff", "\ufeff",
            "\u2028", "\r\n", "\t", "'", '"', "\\", "\\u0000", "\\x00", "%s", "%(x)s", "{}", "é",
            "😀", "e\u0301", "İ", " ", ",", "-0.0", "1e+16"]
any_char = st.characters(exclude_categories=()) | st.integers(0xD800, 0xDFFF).map(chr)
safe_char = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")


def hostile_text(max_size: int = 24) -> st.SearchStrategy[str]:
    """Any text: every code point, lone surrogates and NUL included, and the special pieces."""
    return st.lists(any_char | st.sampled_from(SPECIALS), max_size=max_size).map("".join)


def safe_text(min_size: int = 0, max_size: int = 16) -> st.SearchStrategy[str]:
    """Text any field accepts (no NUL, no lone surrogate)."""
    return st.text(safe_char, min_size=min_size, max_size=max_size)


def long_text(limit: int) -> st.SearchStrategy[str]:
    """Text of limit-1, limit and limit+1 characters, some ending in NUL or a lone surrogate."""
    fills = ["x"] if limit > MESSAGE else ["x", "é", "😀"]
    return st.builds(lambda n, fill, tail: fill * (n - len(tail)) + tail,
                     st.sampled_from([limit - 1, limit, limit + 1]), st.sampled_from(fills),
                     st.sampled_from(["", "", "\x00", "\udc80", "z"]))


def text_values(limit: int) -> st.SearchStrategy[str]:
    """Hostile text for a field of at most ``limit`` characters."""
    return st.one_of(hostile_text(24), st.sampled_from(SPECIALS), long_text(limit),
                     safe_text(max_size=40))


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "NUL"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "lone surrogate"
    return None


def expect_text(value: Any, limit: int, *, min_size: int = 0, optional: bool = True) -> Verdict:
    if value is None:
        return Accepted(None) if optional else Refused("None")
    if not isinstance(value, str):
        return Refused(f"not text: {type(value).__name__}")
    problem = text_problem(value)
    if problem:
        return Refused(problem)
    if not min_size <= len(value) <= limit:
        return Refused(f"{len(value)} characters")
    return Accepted(value)


def expect_capabilities(value: Any) -> Verdict:
    if value is None:
        return Accepted(None)
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        return Refused(f"capabilities of type {type(value).__name__}")
    for item in value:
        verdict = expect_text(item, NAME, min_size=1, optional=False)
        if isinstance(verdict, Refused):
            return verdict
    return Accepted(value)


capability_values = st.one_of(text_values(SHORT), st.lists(text_values(NAME), max_size=4),
                              st.none(), st.sampled_from([",,", " a , b ,", 5, ["ok", 5]]))

# numbers ------------------------------------------------------------------------------------
token_values = st.one_of(
    st.sampled_from([0, 1, MAX_TOKENS, MAX_TOKENS + 1, 2**63 - 1, 2**63, 2**64, -1, -(2**63),
                     2.7, 1.0, True, False, "5", None, Decimal(5)]),
    st.integers(), huge_int,
)


def expect_tokens(value: Any) -> Verdict:
    if type(value) is int and 0 <= value <= MAX_TOKENS:
        return Accepted(value)
    return Refused(f"tokens {type(value).__name__}")


cost_values = st.one_of(
    st.sampled_from([0, 0.0, -0.0, MAX_COST, MAX_COST + 1, math.nextafter(MAX_COST, math.inf),
                     1e308, math.nan, math.inf, -math.inf, -1e-300, 5e-324, 2.7, 0.1, True,
                     "5", None, 2**1100, 10**9, 10**9 + 1, -1]),
    st.floats(), huge_int,
)


def expect_cost(value: Any) -> Verdict:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Refused(f"cost {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        return Refused("cost overflows a float")
    if not math.isfinite(number) or not 0 <= number <= MAX_COST:
        return Refused(f"cost {number}")
    return Accepted(number + 0.0)


# timestamps ---------------------------------------------------------------------------------
offsets = st.builds(timezone, st.timedeltas(min_value=-timedelta(hours=23, minutes=59),
                                            max_value=timedelta(hours=23, minutes=59)))
datetimes = st.datetimes(timezones=st.none() | offsets)
TS_EDGES = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59+00:00",
            "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00-01:00",
            "9999-12-31T23:00:00+01:00", "2024-02-29T12:00:00", "2024-02-30T00:00:00",
            "2024-06-01T12:00:00+05:30", "2024-06-01 12:00:00z", " 2024-06-01T12:00:00Z ",
            "2024-06-01T24:00:00", "2024-06-01T12:00:00+24:00", "20240601T120000Z", "2024-06-01",
            "", "now", "\x00", "\udc80", "2024-06-01T12:00:00\udc80", "Z",
            0, 1.5, True, b"2024-06-01", datetime.max, datetime.min,
            datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))),
            datetime.min.replace(tzinfo=timezone(timedelta(hours=1)))]
timestamp_values = st.one_of(
    st.sampled_from(TS_EDGES), huge_int, datetimes, datetimes.map(datetime.isoformat),
    datetimes.filter(lambda d: d.tzinfo is None).map(lambda d: d.isoformat() + "Z"),
    hostile_text(30),
)


def utc_text(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def expect_timestamp(value: Any, *, optional: bool = True) -> Verdict:
    if value is None:
        return Accepted(None) if optional else Refused("None")
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            return Refused("not ISO 8601")
    if not isinstance(value, datetime):
        return Refused(f"timestamp of type {type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    offset = value.utcoffset()
    assert offset is not None
    try:
        utc = value.replace(tzinfo=None) - offset
    except OverflowError:
        return Refused("outside years 1..9999 in UTC")
    if utc in (datetime.min, datetime.max):
        return Refused("the first or last instant (PostgreSQL's -infinity, infinity)")
    return Accepted(utc_text(utc.replace(tzinfo=UTC)))


# JSON ---------------------------------------------------------------------------------------
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.sampled_from([2**63, 2**70, -(2**70), 10**4000]), huge_int,
    st.floats(), st.sampled_from([1e16, -1e16, 1e308, -0.0, 5e-324, 1.5e300, 0.1]),
    hostile_text(10),
)
json_trees = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(hostile_text(8), children, max_size=4),
    max_leaves=12,
)


def nest(depth: int, as_dict: bool, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"k": value} if as_dict else [value]
    return value


deep_json = st.builds(
    nest, st.sampled_from([0, 1, 99, 100, 101, 254, 255, 256, 990, 1000, 2000])
    | st.integers(0, 2000), st.booleans(), json_leaf)
# Wide objects share one small leaf: a 5,000-digit int or 1e308 (written out as 310 digits)
# under 100,000 keys would make the test about the cost of building 400 MB of text.
wide_json = st.builds(lambda n, leaf: {f"k{i}": leaf for i in range(n)},
                      st.sampled_from([0, 1, 1000, 50_000, 100_000]),
                      st.sampled_from([None, True, 7, -0.0, 0.5, "x", "\udc80", "\x00"]))
key_order_json = st.lists(st.text(safe_char, min_size=0, max_size=6), min_size=2, max_size=8,
                          unique=True).map(lambda keys: {k: i for i, k in enumerate(keys)})
json_values = st.one_of(json_trees, deep_json, wide_json, key_order_json,
                        st.dictionaries(hostile_text(8), json_trees, max_size=5))


def json_problem(value: Any) -> str | None:
    """Why the value cannot be stored as JSON, or None (iterative: the trees may be deep)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if problem := text_problem(item):
                return f"{problem} in JSON"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "NaN or infinity in JSON"
        elif isinstance(item, int) and not isinstance(item, bool):
            try:
                str(item)
            except ValueError:
                return "an int of more than 4300 digits"
        elif isinstance(item, list | dict):
            if depth + 1 > JSON_DEPTH:
                return "nested deeper than 100 levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    # Only text keys are generated: json turns 1 into "1" (JSON has no other).
                    assert isinstance(key, str), key
                    stack.append((key, depth + 1))
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif item is not None and not isinstance(item, bool):
            return f"{type(item).__name__} in JSON"
    if len(dumps_json(value).encode()) > JSON_BYTES:
        return "more than 1 MB of JSON"
    return None


def json_stored(value: Any) -> Any:
    """What a JSON value reads back as: -0.0 becomes 0.0 (PostgreSQL numeric has no -0)."""
    if isinstance(value, float):
        return value + 0.0
    if isinstance(value, list):
        return [json_stored(v) for v in value]
    if isinstance(value, dict):
        return {k: json_stored(v) for k, v in value.items()}
    return value


def expect_json(value: Any, *, object_only: bool = False) -> Verdict:
    if value is None:
        return Accepted(None)
    if object_only and not isinstance(value, dict):
        return Refused("not a JSON object")
    if problem := json_problem(value):
        return Refused(problem)
    return Accepted(json_stored(value))


def canon(value: Any) -> Any:
    """A form of decoded JSON in which 1, 1.0, True and -0.0, 0.0 all differ, and key order not.

    Key order is left out on purpose: PostgreSQL's jsonb stores object keys sorted (shorter
    first), SQLite keeps the text as written (docs/reliability.md).
    """
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, list):
        return ("list", tuple(canon(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, canon(v)) for k, v in value.items())))
    return ("other", repr(value))


# enumerations -------------------------------------------------------------------------------
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
level_values = st.sampled_from([*LEVELS, "info", "Warning", "LOUD", "", None, 10, "INFO\x00",
                                "\udc80"])


def expect_level(value: Any) -> Verdict:
    if isinstance(value, str) and value.upper() in LEVELS:
        return Accepted(value.upper())
    return Refused(f"level {value!r}")


def jsonable(value: Any) -> bool:
    """Whether ``json.dumps`` can put the value in a request body (NaN allowed, as Python does)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


# the arguments of each call ----------------------------------------------------------------
JSON_FIELDS = {"metadata", "details", "capabilities"}


@dataclass(frozen=True)
class Spec:
    """One argument: its kind (for the tally), hostile values, and the oracle."""

    kind: str
    values: st.SearchStrategy[Any]
    expect: Callable[[Any], Verdict]


def text(limit: int, *, min_size: int = 0, optional: bool = True) -> Spec:
    return Spec("text", text_values(limit),
                lambda v: expect_text(v, limit, min_size=min_size, optional=optional))


def choice(allowed: tuple[str, ...], *, optional: bool) -> Spec:
    def expect(value: Any) -> Verdict:
        if value is None and optional:
            return Accepted(None)
        return Accepted(value) if value in allowed else Refused(f"status {value!r}")
    return Spec("enum", st.sampled_from([*allowed, "bogus", "", None, "ACTIVE", 1]), expect)


TIMESTAMP = Spec("timestamp", timestamp_values, expect_timestamp)
TOKENS = Spec("number", token_values, expect_tokens)
COST = Spec("number", cost_values, expect_cost)
DETAILS = Spec("json", json_values, expect_json)
METADATA = Spec("json", json_values, lambda v: expect_json(v, object_only=True))
CAPABILITIES = Spec("capabilities", capability_values, expect_capabilities)
LEVEL = Spec("enum", level_values, expect_level)
OA_STATUSES = ("active", "inactive", "archived")
AGENT_STATUSES = ("pending", "executing", "completed", "failed", "cancelled")
PROMPT_STATUSES = ("pending", "completed", "failed")

ORCHESTRATOR_AGENT = {
    "name": text(NAME, min_size=1, optional=False), "description": text(CONTENT),
    "agent_type": text(SHORT), "capabilities": CAPABILITIES, "default_model": text(SHORT),
    "metadata": METADATA,
}
ORCHESTRATOR_AGENT_UPDATE = {**ORCHESTRATOR_AGENT,
                             "status": choice(OA_STATUSES, optional=False)}
AGENT = {
    "session_id": text(NAME, min_size=1, optional=False), "name": text(SHORT),
    "model": text(SHORT), "metadata": METADATA, "started_at": TIMESTAMP,
    "completed_at": TIMESTAMP,
}
AGENT_UPDATE = AGENT
PROMPT = {
    "content": text(CONTENT, optional=False), "response": text(CONTENT), "model": text(SHORT),
    "tokens_input": TOKENS, "tokens_output": TOKENS, "cost_usd": COST,
    "completed_at": TIMESTAMP, "status": choice(PROMPT_STATUSES, optional=False),
}
COMPLETE_PROMPT = {"response": text(CONTENT), "tokens_input": TOKENS, "tokens_output": TOKENS,
                   "cost_usd": COST}
PROMPT_UPDATE = PROMPT
AGENT_LOG = {
    "message": text(MESSAGE, optional=False), "log_type": text(SHORT, optional=False),
    "details": DETAILS, "created_at": TIMESTAMP, "log_level": LEVEL,
}
SYSTEM_LOG = {
    "message": text(MESSAGE, optional=False), "source": text(SHORT), "details": DETAILS,
    "created_at": TIMESTAMP, "log_level": LEVEL,
}
AGENT_LOG_UPDATE = {k: v for k, v in AGENT_LOG.items() if k != "created_at"}
SYSTEM_LOG_UPDATE = {k: v for k, v in SYSTEM_LOG.items() if k != "created_at"}


def verdicts(specs: Mapping[str, Spec], args: Mapping[str, Any]) -> dict[str, Verdict]:
    return {name: specs[name].expect(args[name]) for name in args if name in specs}


def refusals(expected: Mapping[str, Verdict]) -> dict[str, Verdict]:
    return {k: v for k, v in expected.items() if isinstance(v, Refused)}


def assert_stored(what: str, rows: Mapping[str, Mapping[str, Any]],
                  expected: Mapping[str, Verdict]) -> None:
    """The fields passed read back as the oracle says, on both engines (JSON key order aside)."""
    for name, row in rows.items():
        for column, verdict in expected.items():
            assert isinstance(verdict, Accepted)
            value = row[column]
            if column in JSON_FIELDS:
                ok = canon(value) == canon(verdict.value)
                if ok and name == "sqlite" and isinstance(value, dict):
                    # SQLite keeps the JSON text as written; jsonb sorts keys (reliability.md).
                    ok = list(value) == list(verdict.value)
            else:
                ok = value == verdict.value and type(value) is type(verdict.value)
            assert ok, (f"{what}: {column} reads back as {show(value, 300)} on {name}, expected "
                        f"{show(verdict.value, 300)}")


def mutate(data: st.DataObject, specs: Mapping[str, Spec], base: dict[str, Any]
           ) -> tuple[dict[str, Any], list[str]]:
    """``base`` with one to three arguments replaced by hostile values."""
    hostile = data.draw(st.lists(st.sampled_from(sorted(specs)), min_size=1, max_size=3,
                                 unique=True), label="hostile fields")
    args = dict(base)
    for name in hostile:
        args[name] = data.draw(specs[name].values, label=name)
    return args, hostile
