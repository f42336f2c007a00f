"""Is this schema ours? Column types and change-feed triggers, read from the engine's catalog.

A database loaded by another tool (``pgloader``, as the seeds advise) carries the rows of
``schema_migrations`` and so claims to be current, but its columns are plain text where ours are
uuid / timestamptz / jsonb (or INTEGER / REAL on SQLite) and it has none of our triggers: its
first write fails with a misleading error and live events stay silent. ``connect()`` and
``upgrade`` check it with two catalog queries and refuse it, saying what to run instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from ..config import Dialect
from ..errors import SchemaError
from ..tables import JSON_FIELDS, TABLES, TIME_FIELDS, UUID_FIELDS
from .migrations import change_trigger_names, load_migrations, split_sql_script

# The migration that creates the change-feed triggers: a database that says it has it must
# have them.
_CHANGE_FEED = "change_feed"
_SHOWN = 2  # columns named in the message; the rest are counted

_SQLITE_COLUMNS = (
    "SELECT m.name AS table_name, p.name AS column_name, p.type AS column_type "
    "FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p "
    f"WHERE m.type = 'table' AND m.name IN ({', '.join('?' for _ in TABLES)}) "
    "ORDER BY m.rowid, p.cid"
)
_SQLITE_TRIGGERS = "SELECT name FROM sqlite_master WHERE type = 'trigger'"


@cache
def _sqlite_declared() -> dict[tuple[str, str], str]:
    """The column types our migrations declare on SQLite, read from a scratch database."""
    scratch = sqlite3.connect(":memory:")
    try:
        for migration in load_migrations(Dialect.SQLITE):
            for statement in split_sql_script(migration.sql):
                scratch.execute(statement)
        return {(t, c): kind.upper() for t, c, kind in scratch.execute(_SQLITE_COLUMNS, TABLES)}
    finally:
        scratch.close()


def _postgres_type(column: str) -> str | None:
    """The PostgreSQL type a column must have for the library to work, or None (any)."""
    if column in UUID_FIELDS:
        return "uuid"
    if column in TIME_FIELDS:
        return "timestamp with time zone"
    if column in JSON_FIELDS:
        return "jsonb"
    return None


def _has_change_feed(dialect: Dialect, applied: Iterable[int]) -> bool:
    versions = {m.version for m in load_migrations(dialect) if m.name == _CHANGE_FEED}
    return bool(versions & set(applied))


def _problems(columns: Iterable[tuple[str, str, str]], expected: Mapping[tuple[str, str], str],
              triggers: Iterable[str], *, need_triggers: bool) -> list[str]:
    """Say what differs from our schema: column types (two examples and a count), triggers."""
    problems = []
    wrong = [f"{table}.{column} is {kind or 'untyped'}, not {want}"
             for table, column, kind in columns
             if (want := expected.get((table, column))) is not None
             and " ".join(kind.upper().split()) != want.upper()]
    if wrong:
        more = f", and {len(wrong) - _SHOWN} more" if len(wrong) > _SHOWN else ""
        problems.append(f"{len(wrong)} column(s) of other types ({'; '.join(wrong[:_SHOWN])}"
                        f"{more})")
    if need_triggers:
        missing = sorted(change_trigger_names() - set(triggers))
        if missing:
            names = ", ".join(missing[:2]) + (", ..." if len(missing) > 2 else "")
            count = ("all" if len(missing) == len(change_trigger_names())
                     else f"{len(missing)} of the")
            problems.append(f"{count} {len(change_trigger_names())} change-feed triggers "
                            f"missing ({names})")
    return problems


def foreign_schema_error(where: str, applied: Iterable[int], problems: list[str]) -> SchemaError:
    """The error for a schema that says it is ours but is not."""
    return SchemaError(
        f"{where} claims orchestrator-db schema version {max(applied, default=0)} but its tables "
        f"are not the ones orchestrator-db makes: {'; '.join(problems)}. It was probably loaded "
        "by another tool such as pgloader, which copies rows but not column types and triggers. "
        "Move the data with `orchestrator-db copy SRC_URL DST_URL` from the original database "
        "into a new, empty one instead: it keeps ids and timestamps, creates the schema and "
        "verifies every row.", problems=problems)


def check_sqlite_schema(conn: sqlite3.Connection, applied: set[int], where: str) -> None:
    """Raise SchemaError when a SQLite database with migrations recorded is not our schema."""
    if not applied:
        return
    columns = conn.execute(_SQLITE_COLUMNS, TABLES).fetchall()
    triggers = [name for (name,) in conn.execute(_SQLITE_TRIGGERS).fetchall()]
    problems = _problems(columns, _sqlite_declared(), triggers,
                         need_triggers=_has_change_feed(Dialect.SQLITE, applied))
    if problems:
        raise foreign_schema_error(where, applied, problems)


# Our tables as search_path resolves them; `= ANY(ARRAY(...))` lets the catalogs' indexes on the
# table oid answer (about 0.5 ms for both queries, where `IN (SELECT ...)` scanned pg_trigger).
_POSTGRES_TABLES = "ANY(ARRAY(SELECT to_regclass(t)::oid FROM unnest($1::text[]) AS t))"
_POSTGRES_COLUMNS = (
    "SELECT c.relname AS table_name, a.attname AS column_name, "
    "format_type(a.atttypid, a.atttypmod) AS column_type "
    "FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid "
    f"WHERE a.attrelid = {_POSTGRES_TABLES} AND a.attnum > 0 AND NOT a.attisdropped "
    "ORDER BY array_position($1::text[], c.relname::text), a.attnum"
)
_POSTGRES_TRIGGERS = (
    f"SELECT tgname FROM pg_trigger WHERE tgrelid = {_POSTGRES_TABLES} AND NOT tgisinternal"
)


async def check_postgres_schema(conn: Any, applied: set[int], where: str) -> None:
    """Raise SchemaError when a PostgreSQL schema with migrations recorded is not ours.

    ``conn`` is an asyncpg connection (inside the caller's transaction, if any).
    """
    if not applied:
        return
    tables = list(TABLES)
    columns = [(r[0], r[1], r[2]) for r in await conn.fetch(_POSTGRES_COLUMNS, tables)]
    triggers = [r[0] for r in await conn.fetch(_POSTGRES_TRIGGERS, tables)]
    expected = {(t, c): kind for t, c, _ in columns if (kind := _postgres_type(c)) is not None}
    problems = _problems(columns, expected, triggers,
                         need_triggers=_has_change_feed(Dialect.POSTGRES, applied))
    if problems:
        raise foreign_schema_error(where, applied, problems)


__all__ = ["check_postgres_schema", "check_sqlite_schema", "foreign_schema_error"]
