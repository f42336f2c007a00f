"""copy_database and ``otlp_spans``: the span links go along, so OpenTelemetry ingest carries on.

The source (``populate``) holds a trace received over OTLP: an agent run "lead", its chat span,
and a sub-agent "researcher" whose parent span had not arrived (an orphan row).
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
from copy_helpers import LEAD, ORPHAN_TRACE, send_spans, span_rows

from orchestrator_db import DatabaseManager
from orchestrator_db.tables import OTLP_SPANS_TABLE
from orchestrator_db.transfer import (
    COPY_TABLES,
    CopyError,
    CopyInterrupted,
    VerificationError,
    copy_database,
)


def _target(target: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return (request.getfixturevalue("pg_url") if target == "postgresql"
            else f"sqlite:///{tmp_path}/dst/orchestrator.db")


async def _flip_orphan(db: DatabaseManager) -> None:
    q = db.store.query()
    await db.store.execute(f"UPDATE {OTLP_SPANS_TABLE} SET orphan = NOT orphan "
                           f"WHERE span_id = {q.p(LEAD.hex())}", q.params)


async def _agents(db: DatabaseManager) -> dict[str, dict[str, object]]:
    return {str(a["name"]): a for a in await db.list_agents(session_id=ORPHAN_TRACE.hex())}


@pytest.mark.parametrize("target", ["postgresql", "sqlite"])
async def test_an_orphan_copied_over_is_linked_when_its_parent_arrives_there(
        source_url: str, target: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    dst = _target(target, request, tmp_path)
    async with DatabaseManager(url=source_url) as src:
        spans = await span_rows(src)
        assert [row[5] for row in spans].count(True) == 1  # the researcher is an orphan
    result = await copy_database(source_url, dst)
    [copied] = [t for t in result.tables if t.table == OTLP_SPANS_TABLE]
    assert (copied.source_rows, copied.copied_rows, copied.destination_rows) == (3, 3, 3)
    async with DatabaseManager(url=dst) as db:
        assert await span_rows(db) == spans
        # The orphan's parent reaches the new side: the sub-agent joins its parent's tree.
        await send_spans(db, ORPHAN_TRACE, parent_only=True)
        agents = await _agents(db)
        assert set(agents) == {"lead", "researcher"}
        assert agents["researcher"]["parent_agent_id"] == agents["lead"]["id"]
        # A span sent again after the move is recognised: no second "lead" run.
        receiver_rows = len(await span_rows(db))
        await send_spans(db, ORPHAN_TRACE)
        assert len(await span_rows(db)) == receiver_rows + 2  # only the two new random spans
        assert [a["name"] for a in await db.list_agents(session_id=ORPHAN_TRACE.hex())
                ].count("lead") == 1


@pytest.mark.parametrize("target", ["postgresql", "sqlite"])
async def test_a_copy_stopped_in_the_spans_goes_on_from_there(
        source_url: str, target: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    dst = _target(target, request, tmp_path)
    async with DatabaseManager(url=source_url) as src:
        counts = (await src.stats())["counts"]
        spans = await span_rows(src)
    record_batches = sum(math.ceil(counts[t] / 2) for t in COPY_TABLES)
    # Batches of 2: every record table, then the first of the two batches of span rows.
    with pytest.raises(CopyInterrupted):
        await copy_database(source_url, dst, batch_size=2,
                            stop_after_batches=record_batches + 1)
    async with DatabaseManager(url=dst) as db:
        assert await span_rows(db) == spans[:2]
    result = await copy_database(source_url, dst, batch_size=2)
    assert result.mode == "resume" and result.verified
    [copied] = [t for t in result.tables if t.table == OTLP_SPANS_TABLE]
    assert (copied.existing_rows, copied.copied_rows) == (2, 1)
    async with DatabaseManager(url=dst) as db:
        assert await span_rows(db) == spans


@pytest.mark.parametrize("target", ["postgresql", "sqlite"])
async def test_verification_sees_a_changed_or_extra_span_row(
        source_url: str, target: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    dst = _target(target, request, tmp_path)
    await copy_database(source_url, dst)
    async with DatabaseManager(url=dst) as db:
        await _flip_orphan(db)
    with pytest.raises(VerificationError, match=f"{OTLP_SPANS_TABLE}: 1 row.s. differ .first: "
                       f"span {LEAD.hex()}"):
        await copy_database(source_url, dst)

    async with DatabaseManager(url=dst) as db:
        await _flip_orphan(db)
        lead = (await _agents(db))["lead"]["id"]
        # A span of another trace, received by the destination only.
        q = db.store.query()
        await db.store.execute(
            f"INSERT INTO {OTLP_SPANS_TABLE} (span_id, trace_id, agent_id) "
            f"VALUES ({q.p('ab' * 8)}, {q.p('cd' * 16)}, {q.p(lead)})", q.params)
    with pytest.raises(VerificationError, match="1 unexpected row.s. in the destination"):
        await copy_database(source_url, dst)
    # Merged into, the destination may hold more.
    result = await copy_database(source_url, dst, merge=True)
    assert result.verified


@pytest.mark.parametrize("target", ["postgresql", "sqlite"])
async def test_a_refused_span_row_is_named(source_url: str, target: str,
                                           request: pytest.FixtureRequest,
                                           tmp_path: Path) -> None:
    """Another tool wrote a span row (foreign keys off) whose agent does not exist: the copy
    names that row, not only its batch."""
    path = source_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute(f"INSERT INTO {OTLP_SPANS_TABLE} (span_id, trace_id, agent_id) VALUES "
                     "('ffffffffffffffff', 'ee', '01a20000-0000-7000-8000-00000000dead')")
    conn.close()
    with pytest.raises(CopyError, match="could not write span ffffffffffffffff of trace ee"):
        await copy_database(source_url, _target(target, request, tmp_path))
