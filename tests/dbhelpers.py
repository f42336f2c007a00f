"""Helpers for tests that act as another client of the database under test."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg

from orchestrator_db import DatabaseManager
from orchestrator_db.config import Dialect
from orchestrator_db.store.migrations import load_migrations, split_sql_script


async def run_sql(db: DatabaseManager, sqlite_sql: str, pg_sql: str) -> None:
    """Run a statement on the database from a connection of its own (another client)."""
    if db.db_path is not None:
        conn = sqlite3.connect(db.db_path, isolation_level=None)
        try:
            conn.execute(sqlite_sql)
        finally:
            conn.close()
        return
    conn_pg = await asyncpg.connect(db.target.url)
    try:
        await conn_pg.execute(pg_sql)
    finally:
        await conn_pg.close()


def sqlite_execute(path: Path, *statements: str) -> None:
    """Run ``statements`` on a SQLite file from a connection of its own, and commit."""
    conn = sqlite3.connect(path)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def sqlite_at_old_schema(path: Path, migrations: int) -> None:
    """Create the SQLite database a release with only the first ``migrations`` migrations made."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL, "
                 "name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    for migration in load_migrations(Dialect.SQLITE)[:migrations]:
        for statement in split_sql_script(migration.sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, '2026-11-01')",
                     (migration.version, migration.name))
    conn.commit()
    conn.close()
