"""The change-feed migration: it splits into whole statements and ships in the template schema."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import aclosing
from pathlib import Path

from orchestrator_db import DatabaseManager, Dialect, render_sqlite_schema
from orchestrator_db.events import ChangeFeed
from orchestrator_db.store.base import load_migrations, split_sql_script
from orchestrator_db.store.migrations import change_trigger_names


def test_postgres_function_bodies_stay_whole() -> None:
    migration = next(m for m in load_migrations(Dialect.POSTGRES) if m.name == "change_feed")
    statements = split_sql_script(migration.sql)
    functions = [s for s in statements if "CREATE OR REPLACE FUNCTION" in s]
    triggers = [s for s in statements if "CREATE OR REPLACE TRIGGER" in s]
    assert len(functions) == 5 and len(triggers) == 15
    assert all(s.count("$$") == 2 and s.rstrip().endswith("$$;") for s in functions)
    assert len(statements) == 1 + 5 + 15


def test_migration_0006_recreates_the_functions_without_notify() -> None:
    # Issue 12: a NOTIFY in every commit serialised concurrent writers; 0006 re-creates the
    # functions of existing databases without it (the same text 0002 now generates).
    postgres = {m.name: m for m in load_migrations(Dialect.POSTGRES)}
    def functions(sql: str) -> list[str]:
        return [s[s.index(create):] for s in split_sql_script(sql) if create in s]

    create = "CREATE OR REPLACE FUNCTION"
    polled = functions(postgres["change_feed_polled"].sql)
    assert postgres["change_feed_polled"].version == 6
    assert len(polled) == 5 == len(split_sql_script(postgres["change_feed_polled"].sql))
    assert polled == functions(postgres["change_feed"].sql)
    assert not any("pg_notify" in f for f in polled + functions(postgres["change_feed"].sql))
    sqlite = {m.name: m for m in load_migrations(Dialect.SQLITE)}
    assert split_sql_script(sqlite["change_feed_polled"].sql) == []  # SQLite never notified


def test_dollar_quotes_do_not_change_plain_scripts() -> None:
    script = "CREATE TABLE a (x text DEFAULT 'a;b');\nINSERT INTO a VALUES ('$');\n"
    assert split_sql_script(script) == [
        "CREATE TABLE a (x text DEFAULT 'a;b');", "INSERT INTO a VALUES ('$');"]


async def test_template_schema_database_has_a_working_feed(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(render_sqlite_schema())
        names = {n for (n,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    conn.close()
    assert {n for n in names if n.startswith("changes_")} == change_trigger_names()
    async with DatabaseManager(path) as db, ChangeFeed(db) as feed, \
            aclosing(feed.subscribe()) as events:
        oa = await db.create_orchestrator_agent("from-template")
        event = await asyncio.wait_for(anext(events), 5.0)
    assert (event.table, event.op, event.id, event.position) == (
        "orchestrator_agents", "insert", oa, 1)
