"""Helpers for tests that act as another client of the database under test."""

from __future__ import annotations

import sqlite3

import asyncpg

from orchestrator_db import DatabaseManager


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
