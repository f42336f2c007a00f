"""Fuzzing OrchestratorDBHandler: hostile messages, arguments and extras, on both engines.

After the records and ``handler.flush()``: every record is counted (``written + failed``), none
failed, each one counted as written is in the database with its text escaped as documented
(NUL as ``\\x00``, lone surrogates backslash-escaped), the handler is still ``healthy``, and a
record logged after the hostile ones is written.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fuzz_inputs import count, fuzz_settings, hostile_text, json_trees, show, text_problem
from hypothesis import given
from hypothesis import strategies as st

from orchestrator_db import DatabaseManager, OrchestratorDBHandler

MESSAGE_LIMIT, SHORT_LIMIT = 1_000_000, 1_000


def escaped(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """What the handler stores for ``text``: NUL and lone surrogates escaped, long text cut."""
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 20] + "… [truncated]"


@pytest.fixture
def handler(db_url: str) -> Iterator[OrchestratorDBHandler]:
    handler = OrchestratorDBHandler(db_url, flush_interval_ms=5)
    yield handler
    handler.close()


@pytest.fixture
async def agent(db: DatabaseManager) -> AsyncIterator[str]:
    oa = await db.create_orchestrator_agent(f"handler-{uuid.uuid4()}")
    yield await db.create_agent(oa, "handler-session")


@pytest.fixture
def logger(handler: OrchestratorDBHandler) -> Iterator[logging.Logger]:
    log = logging.getLogger(f"fuzz.handler.{uuid.uuid4().hex}")
    log.propagate = False
    log.setLevel(1)
    log.addHandler(handler)
    yield log
    log.removeHandler(handler)


def _cycle() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def _deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


# Values ``extra=`` may carry, the worst included: objects whose repr() raises, ints of more
# than 4,300 digits inside a container, nesting of about 1,000 (test_fuzz_findings.py).
extra_values = st.one_of(
    json_trees, hostile_text(30),
    st.sampled_from([math.nan, math.inf, -0.0, 10**4000, 10**5000, [10**5000], b"\x00\xff",
                     {1, 2}, Decimal("1.5"), datetime(2024, 1, 1, tzinfo=UTC),
                     ValueError("bad \udc80 \x00"), object(), _BadRepr(), ("t", "\x00")]),
    st.builds(_cycle), st.integers(0, 1200).map(_deep),
)


def _has_huge_int(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() > 14_000
    if isinstance(value, list):
        return any(_has_huge_int(v) for v in value)
    if isinstance(value, dict):
        return any(_has_huge_int(v) for v in value.values())
    return False


extra_keys = st.sampled_from(["payload", "user", "tool", "x-key", "ünï", "k\udc80", "k\x00"])
levels = st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                          logging.CRITICAL, 1, 15, 60])


@st.composite
def records(draw: st.DrawFn, agent_ids: list[str]) -> dict[str, Any]:
    """One hostile record: message (and %-arguments that fit it), level, extras, exc_info."""
    args: tuple[Any, ...] = ()
    message = draw(hostile_text(40) | st.sampled_from(["x" * (MESSAGE_LIMIT + 5), "%", "%s"]))
    if draw(st.booleans()):
        args = (draw(hostile_text(20) | st.sampled_from([b"\x00", 10**30, None, "\udc80"])),)
        message = message.replace("%", "%%") + " %s"  # a format that fits (a misfit: findings)
    extra = draw(st.dictionaries(extra_keys, extra_values, max_size=3))
    route = draw(st.sampled_from(["none", "agent", "missing agent", "garbage", "int"]))
    if route == "agent":
        extra["agent_id"] = agent_ids[0]
    elif route == "missing agent":
        extra["agent_id"] = str(uuid.uuid4())
    elif route == "garbage":
        extra["agent_id"] = draw(hostile_text(12))
    elif route == "int":
        extra["agent_id"] = 12345
    if route != "none" and draw(st.booleans()):
        extra["log_type"] = draw(hostile_text(12) | st.just("t" * 2000))
    return {"message": message, "args": args, "level": draw(levels), "extra": extra,
            "raise": draw(st.sampled_from([None, "boom \udc80\x00", "x" * 5000]))}


def log(logger: logging.Logger, marker: str, index: int, record: dict[str, Any]) -> str:
    """Log the record with a marker in front; return the message as stored."""
    message = f"{marker}:{index}:" + record["message"]
    if record["raise"] is not None:
        try:
            raise RuntimeError(record["raise"])
        except RuntimeError:
            logger.log(record["level"], message, *record["args"], extra=record["extra"],
                       exc_info=True)
    else:
        logger.log(record["level"], message, *record["args"], extra=record["extra"])
    return escaped(message % record["args"] if record["args"] else message)


def storable(value: Any) -> bool:
    """Decoded JSON without NUL or lone surrogates in any key or string."""
    if isinstance(value, str):
        return text_problem(value) is None
    if isinstance(value, list):
        return all(storable(v) for v in value)
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    return True


async def rows_with(db: DatabaseManager, marker: str) -> list[dict[str, Any]]:
    found = []
    for rows in (await db.list_system_logs(order="desc", limit=1000),
                 await db.list_agent_logs(order="desc", limit=1000)):
        found += [r for r in rows if r["message"].startswith(marker)]
    return found


@fuzz_settings(share=0.5)
@given(data=st.data())
async def test_hostile_records_are_all_written(
    handler: OrchestratorDBHandler, logger: logging.Logger, db: DatabaseManager, agent: str,
    data: st.DataObject,
) -> None:
    batch = data.draw(st.lists(records([agent]), min_size=1, max_size=5), label="records")
    marker = uuid.uuid4().hex
    written, failed = handler.written, handler.failed
    expected = [log(logger, marker, i, record) for i, record in enumerate(batch)]
    logger.info("%s:after", marker)
    handler.flush()
    what = f"records {show(batch, 600)}"
    now_written, now_failed = handler.written - written, handler.failed - failed
    assert now_written + now_failed == len(batch) + 1, (
        f"{what}: {now_written} written + {now_failed} failed")
    assert handler.healthy, f"{what}: {handler.last_error}"
    stored = await rows_with(db, marker)
    assert len(stored) == now_written, f"{what}: {len(stored)} rows stored"
    messages = sorted(row["message"] for row in stored)
    assert f"{marker}:after" in messages, what
    assert now_failed == 0, f"{what}: {now_failed} failed: {handler.last_error}"
    assert messages == sorted([*expected, f"{marker}:after"]), what
    for row in stored:
        assert storable(row["details"]), f"{what}: stored details {show(row['details'])}"
        if "log_type" in row:  # an agent log: the record named an existing agent
            assert row["agent_id"] == agent, what
    for index, record in enumerate(batch):
        routed = [r for r in stored if r["message"] == expected[index]]
        to_agent = record["extra"].get("agent_id") == agent
        assert any(("log_type" in r) == to_agent for r in routed), (
            f"{what}: record {index} not in {'agent' if to_agent else 'system'} logs")
        if to_agent:
            log_type = record["extra"].get("log_type")
            wanted = "log" if log_type is None else escaped(log_type, SHORT_LIMIT)
            assert any(r.get("log_type") == wanted for r in routed), (
                f"{what}: log_type of record {index}")
    count("handler", "records written", len(batch) + 1)
