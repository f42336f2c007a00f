"""Minimal reproductions of what the fuzz suite found, kept as regression tests.

Each failed (a raw exception, a value read back different, a record counted nowhere) before its
fix; the fuzz strategies generate these inputs too.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator

import pytest
from fuzz_inputs import Engines

from orchestrator_db import DatabaseManager, OrchestratorDBHandler
from orchestrator_db.errors import ValidationError

HUGE = 10**5000  # str() and repr() of it raise ValueError (sys.get_int_max_str_digits)


async def test_huge_limit_or_order_is_a_validation_error(engines: Engines) -> None:
    for _, db in engines:
        for filters in ({"limit": HUGE}, {"order": HUGE}):
            with pytest.raises(ValidationError):
                await db.list_system_logs(**filters)


async def test_offset_past_bigint_is_a_validation_error(engines: Engines) -> None:
    for _, db in engines:
        with pytest.raises(ValidationError):
            await db.list_system_logs(offset=2**63)


async def test_deeply_nested_cursor_is_a_validation_error(engines: Engines) -> None:
    cursor = base64.urlsafe_b64encode(b"[" * 5000).decode()
    for _, db in engines:
        with pytest.raises(ValidationError):
            await db.list_system_logs(cursor=cursor)


async def test_import_row_with_a_non_text_key_is_a_validation_error(engines: Engines) -> None:
    for _, db in engines:
        with pytest.raises(ValidationError):
            await db.import_rows("system_logs", [{1: "x", "zz": "y"}])


async def test_session_summary_of_a_huge_int_is_a_validation_error(engines: Engines) -> None:
    for _, db in engines:
        with pytest.raises(ValidationError):
            await db.session_summary(HUGE)  # type: ignore[arg-type]


async def test_empty_source_is_kept(engines: Engines) -> None:
    for _, db in engines:
        log_id = await db.create_system_log("m", source="")
        row = await db.get_system_log(log_id)
        assert row is not None and row["source"] == ""


# the logging handler: records lost without being counted ----------------------------------------
class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _deep(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def handler_logger(db_url: str) -> Iterator[tuple[OrchestratorDBHandler, logging.Logger]]:
    handler = OrchestratorDBHandler(db_url, flush_interval_ms=5)
    logger = logging.getLogger(f"fuzz.bugs.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # logging.Handler.handleError prints "--- Logging error ---" for these: keep the output quiet.
    raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False
    yield handler, logger
    logging.raiseExceptions = raise_exceptions
    logger.removeHandler(handler)
    handler.close()


@pytest.mark.parametrize("extra", [
    pytest.param({"payload": BadRepr()}, id="repr-raises"),
    pytest.param({"payload": [BadRepr()]}, id="repr-raises-in-a-list"),
    pytest.param({"payload": {"n": HUGE}}, id="5001-digit-int-in-a-dict"),
    pytest.param({"payload": _deep(5000)}, id="nested-5000-deep"),
])
def test_handler_counts_a_record_with_an_unprintable_extra(
        handler_logger: tuple[OrchestratorDBHandler, logging.Logger], extra: dict) -> None:
    handler, logger = handler_logger
    logger.info("hostile extra", extra=extra)
    handler.flush()
    assert handler.written + handler.failed == 1


def test_handler_counts_a_record_whose_arguments_do_not_fit(
        handler_logger: tuple[OrchestratorDBHandler, logging.Logger]) -> None:
    handler, logger = handler_logger
    logger.info("%s and %s", "only one")
    handler.flush()
    assert handler.written + handler.failed == 1


async def test_handler_retries_a_batch_as_the_bulk_path_would(db_url: str) -> None:
    async with DatabaseManager(url=db_url) as db:
        oa = await db.create_orchestrator_agent("bugs")
        agent = await db.create_agent(oa, "s")
    handler = OrchestratorDBHandler(db_url, flush_interval_ms=1000)
    logger = logging.getLogger(f"fuzz.bugs.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        # One batch: a record naming a missing agent, and one whose details are too deep to
        # store (the bulk path would keep it with {"details_dropped": ...}).
        logger.info("orphan", extra={"agent_id": str(uuid.uuid4())})
        logger.info("deep", extra={"agent_id": agent, "payload": _deep(200)})
        handler.flush()
        assert (handler.written, handler.failed) == (2, 0), handler.last_error
    finally:
        logger.removeHandler(handler)
        handler.close()
