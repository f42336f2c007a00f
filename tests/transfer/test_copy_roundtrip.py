"""copy_database: SQLite → PostgreSQL → SQLite, nothing lost, nothing changed, verified."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from copy_helpers import populate, read_all, rollup_rows, with_bad_json_row

from orchestrator_db import DatabaseManager
from orchestrator_db.tables import OTLP_SPANS_TABLE
from orchestrator_db.transfer import (
    COPY_TABLES,
    ROLLUP_TABLE,
    CopyError,
    VerificationError,
    canonical_line,
    copy_database,
)


async def test_sqlite_to_postgres_and_back(source_url: str, pg_url: str, tmp_path: Path) -> None:
    async with DatabaseManager(url=source_url) as src:
        before = await read_all(src)
        rollups = await rollup_rows(src)
    assert all(before[t] for t in COPY_TABLES) and len(rollups) == 1
    assert len(before[OTLP_SPANS_TABLE]) == 3

    result = await copy_database(source_url, pg_url, batch_size=7)
    assert result.mode == "new" and result.verified
    assert [t.table for t in result.tables] == [*COPY_TABLES, ROLLUP_TABLE, OTLP_SPANS_TABLE]
    assert {t.table: t.copied_rows for t in result.tables} == {
        **{t: len(rows) for t, rows in before.items()}, ROLLUP_TABLE: 1}
    async with DatabaseManager(url=pg_url) as dst:
        assert await read_all(dst) == before
        assert await rollup_rows(dst) == rollups
        # The copy is a working database, not just rows: aggregates agree too.
        async with DatabaseManager(url=source_url) as src:
            assert await dst.session_summary("session-α") == await src.session_summary(
                "session-α")
            assert await dst.cost_summary("model") == await src.cost_summary("model")

    back = f"sqlite:///{tmp_path}/back/orchestrator.db"
    result = await copy_database(pg_url, back, batch_size=1000)
    assert result.mode == "new" and result.verified
    async with DatabaseManager(url=back) as db:
        assert await read_all(db) == before
        assert await rollup_rows(db) == rollups
    # Same checksums on every side.
    again = await copy_database(source_url, back)
    assert again.mode == "resume" and again.copied_rows == 0
    assert [t.checksum for t in again.tables] == [t.checksum for t in result.tables]


async def test_copying_again_copies_nothing(source_url: str, pg_url: str) -> None:
    first = await copy_database(source_url, pg_url)
    second = await copy_database(source_url, pg_url)
    assert second.mode == "resume" and second.verified
    assert second.copied_rows == 0
    assert [t.existing_rows for t in second.tables] == [t.copied_rows for t in first.tables]


async def test_rows_added_to_the_source_later_are_copied_by_a_rerun(
        source_url: str, pg_url: str) -> None:
    await copy_database(source_url, pg_url)
    async with DatabaseManager(url=source_url) as src:
        agent = (await src.list_agents())[0]["id"]
        await src.create_agent_log(agent, "late line", details={"late": True})
        before = await read_all(src)
    result = await copy_database(source_url, pg_url)
    assert result.mode == "resume" and result.copied_rows == 1
    async with DatabaseManager(url=pg_url) as dst:
        assert await read_all(dst) == before


async def test_foreign_destination_is_refused_unless_merge(source_url: str, pg_url: str) -> None:
    async with DatabaseManager(url=pg_url) as dst:
        other = await dst.create_orchestrator_agent("someone else's")
        await dst.create_agent(other, "their-session")
    with pytest.raises(CopyError, match="already holds data that is not an interrupted copy "
                       r"of this source \(in orchestrator_agents: 1 row, agents: 1 row\).*merge=True"):
        await copy_database(source_url, pg_url)
    async with DatabaseManager(url=pg_url) as dst:  # untouched
        assert len(await dst.list_orchestrator_agents()) == 1

    result = await copy_database(source_url, pg_url, merge=True, batch_size=5)
    assert result.mode == "merge" and result.verified
    async with DatabaseManager(url=source_url) as src, DatabaseManager(url=pg_url) as dst:
        mine, theirs = await read_all(src), await read_all(dst)
    for table in COPY_TABLES:
        ids = {r["id"] for r in theirs[table]}
        assert all(r["id"] in ids for r in mine[table])
        assert [r for r in theirs[table] if r["id"] in {m["id"] for m in mine[table]}] == \
            mine[table]
    assert len(theirs["orchestrator_agents"]) == len(mine["orchestrator_agents"]) + 1
    # Merging again adds nothing and still verifies.
    again = await copy_database(source_url, pg_url, merge=True)
    assert again.copied_rows == 0 and again.verified


async def test_verification_fails_loudly_on_a_changed_row(source_url: str, pg_url: str) -> None:
    await copy_database(source_url, pg_url)
    conn = await asyncpg.connect(pg_url)  # search_path=<the test's schema>
    try:
        await conn.execute("UPDATE agent_logs SET message = 'tampered' WHERE id = "
                           "(SELECT id FROM agent_logs ORDER BY created_at, id OFFSET 5 LIMIT 1)")
    finally:
        await conn.close()
    with pytest.raises(VerificationError, match=r"agent_logs.*differs in message"):
        await copy_database(source_url, pg_url)
    # A re-run cannot mend it (it continues after the rows the destination holds): the message
    # says what will.
    with pytest.raises(VerificationError, match="empty the destination and copy again"):
        await copy_database(source_url, pg_url)


async def test_verification_fails_when_the_destination_has_an_extra_row(
        source_url: str, tmp_path: Path) -> None:
    dst = f"sqlite:///{tmp_path}/dst.db"
    await copy_database(source_url, dst)
    async with DatabaseManager(url=dst) as db:
        await db.create_system_log("only in the destination")
    # The extra row is the newest: the destination is no longer a prefix of the source.
    with pytest.raises(CopyError, match="system_logs"):
        await copy_database(source_url, dst)


async def test_same_database_and_missing_source_are_refused(source_url: str,
                                                            tmp_path: Path) -> None:
    with pytest.raises(CopyError, match="same database"):
        await copy_database(source_url, source_url)
    with pytest.raises(CopyError, match="does not exist"):
        await copy_database(f"sqlite:///{tmp_path}/nope.db", f"sqlite:///{tmp_path}/b.db")
    assert not (tmp_path / "nope.db").exists()


async def test_postgres_jsonb_number_normalisation_is_not_a_difference(pg_url: str,
                                                                        tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path}/numbers.db"
    async with DatabaseManager(url=src) as db:
        await db.create_system_log("big numbers", details={"big": 1e20, "small": 1e-7,
                                                           "neg": -3.0e17, "half": 0.5})
    result = await copy_database(src, pg_url)
    assert result.verified
    async with DatabaseManager(url=pg_url) as db:
        details = (await db.list_system_logs())[0]["details"]
    assert details["big"] == 1e20 and details["small"] == 1e-7 and details["half"] == 0.5


def test_canonical_line_ignores_key_order_and_timestamp_spelling() -> None:
    columns = ("id", "details", "created_at")
    a = {"id": "x", "details": {"b": 1, "a": [1, "é"]}, "created_at": "2026-01-01T00:00:00Z"}
    b = {"id": "x", "details": {"a": [1, "é"], "b": 1},
         "created_at": "2026-01-01T00:00:00.000000+00:00"}
    assert canonical_line(a, columns) == canonical_line(b, columns)
    assert canonical_line(a, columns) != canonical_line({**b, "details": {"a": [1], "b": 1}},
                                                        columns)


async def test_populate_helper_covers_every_table(tmp_path: Path) -> None:
    async with DatabaseManager(url=f"sqlite:///{tmp_path}/p.db") as db:
        await populate(db, logs=3)
        stats = await db.stats()
    assert all(stats["counts"][t] for t in COPY_TABLES)


@pytest.mark.parametrize("target", ["postgresql", "sqlite"])
async def test_invalid_json_written_by_another_tool_is_named(
        target: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    src = tmp_path / "hand-made.db"
    await with_bad_json_row(src, "01a20000-0000-7000-8000-000000000001", "{oops")
    dst = (request.getfixturevalue("pg_url") if target == "postgresql"
           else f"sqlite:///{tmp_path}/dst.db")
    with pytest.raises(CopyError, match="01a20000-0000-7000-8000-000000000001.*invalid JSON in "
                       "details"):
        await copy_database(src, dst)


async def test_the_first_and_last_instants_survive_copies_and_cursors(
        tmp_path: Path, pg_url: str) -> None:
    # No write takes datetime.min or datetime.max (PostgreSQL stores them as -infinity and
    # infinity), but a file written before that rule, or by another tool, may hold them. A
    # copy stores them as asyncpg writes a parameter, its checksum reads them back as the
    # instants, and a cursor or resume position naming one still finds the rows after it.
    # Several rows at each, so that pages end between them.
    source = f"sqlite:///{tmp_path}/edges/orchestrator.db"
    first, last = "0001-01-01T00:00:00.000000+00:00", "9999-12-31T23:59:59.999999+00:00"
    async with DatabaseManager(url=source) as src:
        oa = await src.create_orchestrator_agent("edges")
        agent = await src.create_agent(oa, "s")
        ids = await src.create_agent_logs([{"agent_id": agent, "message": f"edge {i}"}
                                           for i in range(13)])
    with contextlib.closing(sqlite3.connect(tmp_path / "edges" / "orchestrator.db")) as conn:
        for i, row_id in enumerate(ids):
            when = first if i < 6 else last if i > 6 else "2026-01-01T00:00:00.000000+00:00"
            conn.execute("UPDATE agent_logs SET created_at = ? WHERE id = ?", (when, row_id))
        conn.commit()
    async with DatabaseManager(url=source) as src:
        before = await read_all(src)
    assert [r["created_at"] for r in before["agent_logs"]] == [first] * 6 + [
        "2026-01-01T00:00:00.000000+00:00"] + [last] * 6

    assert (await copy_database(source, pg_url, batch_size=4)).verified
    back = f"sqlite:///{tmp_path}/back/orchestrator.db"
    assert (await copy_database(pg_url, back, batch_size=4)).verified
    for url in (pg_url, back):
        async with DatabaseManager(url=url) as db:
            assert await read_all(db) == before
            for order in ("asc", "desc"):
                seen, cursor = [], None
                while True:
                    page = await db.page_agent_logs(agent, limit=4, cursor=cursor, order=order)
                    seen += [r["id"] for r in page.items]
                    if (cursor := page.next_cursor) is None:
                        break
                ids = [r["id"] for r in before["agent_logs"]]
                assert seen == (ids if order == "asc" else ids[::-1])
            assert len(await db.list_agent_logs(agent, since=last)) == 6
    async with DatabaseManager(url=pg_url) as db:  # as a one-row write of them would store
        [row] = await db.store.fetch(
            "SELECT count(*) FILTER (WHERE created_at = 'infinity') AS late, "
            "count(*) FILTER (WHERE created_at = '-infinity') AS early FROM agent_logs")
        assert (row["late"], row["early"]) == (6, 6)
