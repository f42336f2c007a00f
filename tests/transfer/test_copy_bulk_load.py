"""The copy's bulk load: upkeep deferred then restored; no change rows for copied records.

On PostgreSQL the destination's secondary indexes and foreign keys are dropped and its
change-feed triggers disabled while the rows go in, then restored; a copy that stops (asked to,
or killed) leaves the statements that restore them in the database and the next copy runs them.
Copied rows are history, not news: the destination's change log gets no row for them, only the
source's newest change row, so positions go on after the source's on both engines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from copy_helpers import read_all

from orchestrator_db import DatabaseManager, SchemaError
from orchestrator_db.transfer import COPY_TABLES, CopyInterrupted, copy_database

DEFERRED = "orchestrator_db_deferred"
_CATALOG = {
    "indexes": "SELECT indexname, regexp_replace(indexdef, ' ON [a-z0-9_]+\\.', ' ON ') "
               "FROM pg_indexes WHERE schemaname = current_schema()",
    "constraints": "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                   "WHERE connamespace = current_schema()::regnamespace",
    "triggers": "SELECT tgname, tgenabled::text FROM pg_trigger WHERE NOT tgisinternal "
                "AND tgrelid::regclass::text NOT LIKE '%.%'",
}


async def catalog(url: str) -> dict[str, Any]:
    """The schema's indexes, constraints and triggers (with their state), and leftovers."""
    conn = await asyncpg.connect(url)
    try:
        out: dict[str, Any] = {k: sorted(tuple(r) for r in await conn.fetch(sql))
                               for k, sql in _CATALOG.items()}
        out["deferred"] = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", DEFERRED)
        return out
    finally:
        await conn.close()


async def fresh_catalog(pg_url: str) -> dict[str, Any]:
    """What the package's migrations make, read from a schema of its own."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    base, _, _ = pg_url.partition("?")
    admin = await asyncpg.connect(base)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        url = f"{base}?search_path={schema}"
        async with DatabaseManager(url=url):
            pass
        return await catalog(url)
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def test_postgres_destination_ends_with_its_indexes_keys_and_triggers(
        source_url: str, pg_url: str) -> None:
    want = await fresh_catalog(pg_url)
    assert want["indexes"] and want["constraints"] and want["triggers"]
    assert not want["deferred"]
    result = await copy_database(source_url, pg_url, batch_size=7)
    assert result.verified
    assert await catalog(pg_url) == want


async def test_a_stopped_copy_restores_them_and_the_rerun_completes(source_url: str,
                                                                     pg_url: str) -> None:
    want = await fresh_catalog(pg_url)
    with pytest.raises(CopyInterrupted):
        await copy_database(source_url, pg_url, batch_size=10, stop_after_batches=6)
    assert await catalog(pg_url) == want  # usable as it is, until the copy is run again
    result = await copy_database(source_url, pg_url, batch_size=10)
    assert result.mode == "resume" and result.verified
    assert await catalog(pg_url) == want
    async with DatabaseManager(url=source_url) as a, DatabaseManager(url=pg_url) as b:
        assert await read_all(a) == await read_all(b)


async def test_restore_statements_left_by_a_killed_copy_are_run_by_the_next(
        source_url: str, pg_url: str) -> None:
    want = await fresh_catalog(pg_url)
    async with DatabaseManager(url=pg_url) as db:
        # What a copy killed while loading leaves: upkeep deferred, its restore recorded.
        await db.store.begin_bulk_load(["agents", "agent_logs"])
    left = await catalog(pg_url)
    assert left["deferred"]
    assert ("changes_agent_logs_insert", "D") in left["triggers"]
    assert len(left["indexes"]) < len(want["indexes"])
    assert len(left["constraints"]) < len(want["constraints"])
    result = await copy_database(source_url, pg_url)
    assert result.mode == "new" and result.verified
    assert await catalog(pg_url) == want
    # A merge restores them too, before it writes anything.
    async with DatabaseManager(url=pg_url) as db:
        await db.store.begin_bulk_load(["agent_logs"])
    await copy_database(source_url, pg_url, merge=True)
    assert await catalog(pg_url) == want


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator_db.cli", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


async def test_a_database_left_by_an_unfinished_copy_refuses_writers_until_restored(
        source_url: str, pg_url: str) -> None:
    """Without its keys and change-feed triggers, writes would go in unchecked and no
    subscriber would see them: a writer gets a SchemaError saying what to run instead."""
    want = await fresh_catalog(pg_url)
    await copy_database(source_url, pg_url)
    async with DatabaseManager(url=pg_url) as db:
        # What a copy killed while loading leaves: upkeep deferred, its restore recorded.
        await db.store.begin_bulk_load(["agents", "agent_logs"])
    with pytest.raises(SchemaError, match="destination of a `copy` that has not ended") as e:
        await DatabaseManager(url=pg_url).connect()
    assert "orchestrator-db upgrade" in e.value.message
    async with DatabaseManager(url=pg_url, read_only=True) as reader:  # reading is fine
        assert (await reader.stats())["counts"]["agent_logs"] == 120
    assert (await catalog(pg_url))["deferred"]

    upgraded = _cli("upgrade", "--url", pg_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "already up to date" in upgraded.stdout
    assert re.search(r"; restored [1-9]\d* index\(es\), key\(s\) and trigger\(s\) that a copy "
                     r"which did not end had left off", upgraded.stdout), upgraded.stdout
    assert await catalog(pg_url) == want
    async with DatabaseManager(url=pg_url) as db:  # whole again: writers are welcome
        oa = await db.create_orchestrator_agent("after the restore")
        assert await db.get_orchestrator_agent(oa) is not None
    again = _cli("upgrade", "--url", pg_url)
    assert "restored" not in again.stdout


async def _changes(url: str) -> list[dict[str, Any]]:
    async with DatabaseManager(url=url) as db:
        return await db.store.fetch(
            "SELECT position, table_name, op, row_id FROM changes ORDER BY position")


@pytest.mark.parametrize("target", ["postgresql", "sqlite"])
async def test_copied_rows_make_no_change_rows_and_positions_go_on(
        source_url: str, target: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    dst = (request.getfixturevalue("pg_url") if target == "postgresql"
           else f"sqlite:///{tmp_path}/dst.db")
    source_changes = await _changes(source_url)
    head = source_changes[-1]
    assert len(source_changes) > 100

    await copy_database(source_url, dst, batch_size=25)
    assert await _changes(dst) == [head]
    # Copying again (nothing to copy) changes nothing.
    await copy_database(source_url, dst)
    assert await _changes(dst) == [head]

    # A follower that read the source up to any position reads on here: what is new.
    async with DatabaseManager(url=dst) as db:
        agent = (await db.list_agents())[0]["id"]
        log = await db.create_agent_log(agent, "written after the copy")
    after = await _changes(dst)
    assert after[0] == head
    assert [(c["position"], c["table_name"], c["row_id"]) for c in after[1:]] == [
        (head["position"] + 1, "agent_logs", log)]


@pytest.mark.parametrize("target", ["postgresql", "sqlite"])
async def test_positions_go_on_after_a_copy_that_did_not_end(
        source_url: str, target: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """`upgrade` ends a killed copy (README): the destination's positions still go on after
    the source's, so a follower moving over misses nothing and replays nothing."""
    dst = (request.getfixturevalue("pg_url") if target == "postgresql"
           else f"sqlite:///{tmp_path}/dst.db")
    head = (await _changes(source_url))[-1]
    with pytest.raises(CopyInterrupted):
        await copy_database(source_url, dst, batch_size=10, stop_after_batches=3)
    upgraded = _cli("upgrade", "--url", dst)
    assert upgraded.returncode == 0, upgraded.stderr
    async with DatabaseManager(url=dst) as db:
        log = await db.create_system_log("written after the upgrade")
    assert [(c["position"], c["row_id"]) for c in await _changes(dst)] == [
        (head["position"], head["row_id"]), (head["position"] + 1, log)]


async def test_a_merge_records_the_rows_it_adds_as_changes(source_url: str,
                                                           pg_url: str) -> None:
    async with DatabaseManager(url=pg_url) as db:
        other = await db.create_orchestrator_agent("someone else's")
        await db.create_system_log("theirs", details={"other": other})
    before = await _changes(pg_url)
    result = await copy_database(source_url, pg_url, merge=True)
    assert result.mode == "merge" and result.verified
    added = (await _changes(pg_url))[len(before):]
    records = sum(t.copied_rows for t in result.tables if t.table in COPY_TABLES)
    assert len(added) == records  # not the cost rollup nor the span links: they are no news
    assert records == result.copied_rows - 1 - 3
    assert all(c["op"] == "insert" for c in added)


async def test_text_that_looks_like_copy_syntax_arrives_unchanged(pg_url: str,
                                                                  tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path}/tricky.db"
    tricky = ["\\N", "a\tb", "c\\d", "line\r\nnext", "\\", "\t", "ends with \\", "plain"]
    async with DatabaseManager(url=src) as db:
        for i, message in enumerate(tricky):
            await db.create_system_log(message, source=message if i % 2 else None,
                                       details={"m": message, "n": i})
    result = await copy_database(src, pg_url, batch_size=3)
    assert result.verified
    async with DatabaseManager(url=src) as a, DatabaseManager(url=pg_url) as b:
        assert await read_all(b) == await read_all(a)
        assert sorted(r["message"] for r in (await read_all(b))["system_logs"]) == sorted(tricky)
