"""Another program's database is refused, left as it was, with an error that says so.

A command that must not create a database (every one but ``upgrade``) refuses a database without
our schema, as PostgreSQL always did: before, SQLite wrote all of our tables into another app's
file (or into an empty one). A ``schema_migrations`` table that is not ours is a SchemaError,
not a TypeError from comparing its versions; a table of ours with other columns fails a
migration with "not an orchestrator-db database", not with advice to run `upgrade` again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from dbhelpers import sqlite_execute
from orchestrator_db import DatabaseManager
from orchestrator_db.errors import NotFoundError, SchemaError


def _sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


async def _foreign(url: str, *statements: str) -> None:
    """Make the database another program's: run ``statements`` there (the same on both)."""
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        sqlite_execute(path, *statements)
        return
    conn_pg = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn_pg.execute(statement)
    finally:
        await conn_pg.close()


async def _tables(url: str) -> set[str]:
    """The names of the tables and views there."""
    path = _sqlite_path(url)
    if path is not None:
        conn = sqlite3.connect(path)
        try:
            return {n for (n,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        finally:
            conn.close()
    conn_pg = await asyncpg.connect(url)
    try:
        return {r[0] for r in await conn_pg.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()")}
    finally:
        await conn_pg.close()


@pytest.mark.parametrize("read_only", [False, True])
async def test_a_database_without_our_schema_is_refused_and_left_alone(
        db_url: str, read_only: bool) -> None:
    await _foreign(db_url, "CREATE TABLE users (id integer)")
    with pytest.raises(NotFoundError, match="no orchestrator-db schema at .*orchestrator-db "
                                            "upgrade"):
        async with DatabaseManager(url=db_url, must_exist=True, read_only=read_only):
            pass
    assert await _tables(db_url) == {"users"}
    path = _sqlite_path(db_url)
    if path is not None:  # not even turned to WAL
        assert not Path(f"{path}-wal").exists()
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        finally:
            conn.close()
    # `upgrade` (must_exist off) still puts our schema there when asked
    async with DatabaseManager(url=db_url) as db:
        assert db.found_schema_version == 0 and await db.schema_version() > 0
    assert {"users", "agents", "schema_migrations"} <= await _tables(db_url)


@pytest.mark.parametrize("read_only", [False, True])
async def test_an_empty_sqlite_file_is_no_database(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(NotFoundError, match=f"no orchestrator-db schema at {path}"):
        async with DatabaseManager(path, must_exist=True, read_only=read_only):
            pass
    assert path.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    async with DatabaseManager(path) as db:  # the default creates it, as before
        assert db.found_schema_version == 0 and await db.schema_version() > 0


# Tables of that name that are not ours: other columns, or versions that are no numbers.
FOREIGN_MIGRATION_TABLES = {
    "other columns": ("CREATE TABLE schema_migrations (version text, name text)",
                      "INSERT INTO schema_migrations VALUES ('abc', 'x')"),
    "text versions": ("CREATE TABLE schema_migrations (version text, name text, applied_at text)",
                      "INSERT INTO schema_migrations VALUES ('abc', 'x', 'y')"),
    "version zero": ("CREATE TABLE schema_migrations (version integer, name text, "
                     "applied_at text)",
                     "INSERT INTO schema_migrations VALUES (0, 'x', 'y')"),
}


@pytest.mark.parametrize("kind", sorted(FOREIGN_MIGRATION_TABLES))
@pytest.mark.parametrize("mode", ["create", "must_exist", "read_only"])
async def test_a_schema_migrations_table_of_another_program_is_a_schema_error(
        db_url: str, kind: str, mode: str) -> None:
    await _foreign(db_url, *FOREIGN_MIGRATION_TABLES[kind])
    with pytest.raises(SchemaError, match=r"is not an orchestrator-db database \(its "
                                          r"schema_migrations table (has|holds)"):
        async with DatabaseManager(url=db_url, must_exist=mode != "create",
                                   read_only=mode == "read_only"):
            pass
    assert await _tables(db_url) == {"schema_migrations"}


async def test_a_table_of_ours_with_other_columns_fails_the_migration_as_not_ours(
        db_url: str) -> None:
    await _foreign(db_url, "CREATE TABLE agents (id text PRIMARY KEY, foo text)")
    with pytest.raises(SchemaError) as caught:
        async with DatabaseManager(url=db_url):
            pass
    message = str(caught.value)
    assert "is not an orchestrator-db database (its table(s) agents (id, foo) have other " \
           "columns than orchestrator-db's, so migration 0001_initial fails: " in message
    assert "session_id" in message  # the driver's words
    assert "upgrade" not in message  # it would fail the same way again
    assert await _tables(db_url) == {"agents"}  # rolled back
    path = _sqlite_path(db_url)
    if path is not None:
        conn = sqlite3.connect(path)
        try:  # put back in its own journal mode
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        finally:
            conn.close()
