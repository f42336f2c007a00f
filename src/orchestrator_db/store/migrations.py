"""Schema migrations: the packaged SQL templates, read in order and rendered per engine.

Each ``schema/NNNN_name.sql`` is written once for both engines; the words that differ (column
types, ``IF NOT EXISTS`` on ``ADD COLUMN``, ``WITHOUT ROWID``) are ``{word}`` placeholders filled
from ``SQLITE_WORDS`` / ``POSTGRES_WORDS`` below, so a table cannot drift apart between engines.
Migration 0002 (the change feed) is a template plus generated SQL: its triggers are rendered from
``tables.CHANGE_FIELDS``, one template per engine applied to each table.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, assert_never

from ..config import Dialect
from ..errors import NotFoundError, SchemaError, SchemaNotFoundError
from ..tables import CHANGE_FIELDS, CHANGES_TABLE, ChangeFields
from .aggregates import aggregate_sql, session_trigger_sql

# The channel the PostgreSQL triggers NOTIFYed up to migration 0006 (payload: the newest position).
NOTIFY_CHANNEL = "orchestrator_db_changes"
CHANGE_OPS: tuple[str, ...] = ("insert", "update", "delete")


# What each {word} of a schema template becomes on each engine. SQLite keeps ids, times and
# JSON as TEXT (fixed-shape strings that sort in time order); PostgreSQL uses native types.
SQLITE_WORDS: dict[str, str] = {
    "id": "TEXT PRIMARY KEY NOT NULL", "uuid": "TEXT", "text": "TEXT", "json": "TEXT",
    "time": "TEXT", "date": "TEXT", "bigint": "INTEGER", "double": "REAL", "bool": "INTEGER",
    "false": "0", "serial": "INTEGER PRIMARY KEY", "default_now": "",
    "add_column": "ADD COLUMN", "without_rowid": " WITHOUT ROWID",
    "bytewise": "",  # BINARY, SQLite's default: text compares byte-wise
}
POSTGRES_WORDS: dict[str, str] = {
    "id": "uuid PRIMARY KEY", "uuid": "uuid", "text": "text", "json": "jsonb",
    "time": "timestamptz", "date": "date", "bigint": "bigint", "double": "double precision",
    "bool": "boolean", "false": "false", "serial": "bigserial PRIMARY KEY",
    "default_now": " DEFAULT now()", "add_column": "ADD COLUMN IF NOT EXISTS", "without_rowid": "",
    "bytewise": ' COLLATE "C"',
}
_WORD = re.compile(r"\{([a-z_]+)\}")


def render_template(template: str, dialect: Dialect) -> str:
    """Fill a schema template's ``{word}`` placeholders for one engine (SchemaError if unknown)."""
    words = SQLITE_WORDS if dialect is Dialect.SQLITE else POSTGRES_WORDS

    def word(match: re.Match[str]) -> str:
        try:
            return words[match.group(1)]
        except KeyError:
            raise SchemaError(f"unknown schema template word {match.group(0)}") from None

    return _WORD.sub(word, template)


@dataclass
class Migration:
    """One numbered schema change, rendered from ``schema/NNNN_name.sql`` for one engine."""

    version: int
    name: str
    sql: str


def load_migrations(dialect: Dialect) -> list[Migration]:
    """Return the packaged migrations of one engine, in order (with their generated SQL)."""
    folder = resources.files("orchestrator_db") / "schema"
    try:
        entries = sorted((e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise SchemaNotFoundError(f"packaged migrations not found in {folder}") from exc
    migrations = []
    for entry in entries:
        number, _, rest = entry.name.partition("_")
        name = rest.removesuffix(".sql")
        sql = render_template(entry.read_text(encoding="utf-8"), dialect)
        if name in _GENERATED:
            sql = sql.rstrip() + "\n\n" + _GENERATED[name](dialect)
        migrations.append(Migration(int(number), name, sql))
    if not migrations:
        raise SchemaNotFoundError(f"no migrations found in {folder}")
    return migrations


def change_trigger_sql(dialect: Dialect) -> str:
    """Return the change-feed triggers of every record table, as one SQL script."""
    if dialect is Dialect.SQLITE:
        render, separator = _sqlite_change_triggers, ""
    elif dialect is Dialect.POSTGRES:
        render, separator = _postgres_change_triggers, "\n"
    else:  # pragma: no cover
        assert_never(dialect)
    return separator.join(render(_ident(table), fields) for table, fields in CHANGE_FIELDS.items())


def change_trigger_names() -> frozenset[str]:
    """Return the names of the change-feed triggers (the same on both engines)."""
    return frozenset(f"changes_{table}_{op}" for table in CHANGE_FIELDS for op in CHANGE_OPS)


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def _ident(name: str) -> str:
    # The names come from tables.py, never from input; checking costs nothing and keeps a typo
    # there from turning into broken (or quoted-out) SQL.
    if not _IDENTIFIER.fullmatch(name):
        raise SchemaError(f"not a plain SQL identifier: {name!r}")
    return name


def _recorded(row: str, fields: ChangeFields) -> list[str]:
    """Return the expressions of session_id, agent_id and log_level read from ``row``."""
    return [f"{row}.{_ident(column)}" if column else "NULL"
            for column in (fields.session_id, fields.agent_id, fields.log_level)]


# SQLite: one row-level trigger per table and operation. strftime gives the same text shape as
# models.format_ts (microseconds, +00:00), so created_at sorts and parses like every other time.
_SQLITE_TRIGGER = """\
CREATE TRIGGER IF NOT EXISTS changes_{table}_{op} AFTER {OP} ON {table} BEGIN
    INSERT INTO {changes} (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('{table}', '{op}', {row}.id, {session_id}, {agent_id}, {log_level},
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
"""


# The insert trigger's work done for a whole statement at once (sqlite_changes.insert_recorded):
# the change rows of the rows inserted after rowid ``?``, in insertion order.
_SQLITE_INSERTED = """\
INSERT INTO {changes} (table_name, op, row_id, session_id, agent_id, log_level, created_at)
SELECT '{table}', 'insert', r.id, {session_id}, {agent_id}, {log_level},
       strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')
FROM {table} AS r WHERE r.rowid > ? ORDER BY r.rowid"""


def sqlite_inserted_changes_sql(table: str) -> str:
    """Return the INSERT ... SELECT that records what ``changes_<table>_insert`` would have."""
    session_id, agent_id, log_level = _recorded("r", CHANGE_FIELDS[table])
    return _SQLITE_INSERTED.format(changes=CHANGES_TABLE, table=_ident(table),
                                   session_id=session_id, agent_id=agent_id, log_level=log_level)


def _sqlite_change_triggers(table: str, fields: ChangeFields) -> str:
    parts = []
    for op in CHANGE_OPS:
        row = "OLD" if op == "delete" else "NEW"
        session_id, agent_id, log_level = _recorded(row, fields)
        parts.append(_SQLITE_TRIGGER.format(
            table=table, op=op, OP=op.upper(), changes=CHANGES_TABLE, row=row,
            session_id=session_id, agent_id=agent_id, log_level=log_level))
    return "".join(parts)


# PostgreSQL: one function per table (rendered here rather than one generic function with
# dynamic SQL, which would re-plan its INSERT on every statement) and three statement-level
# triggers with transition tables, so a 20k-row COPY costs one INSERT ... SELECT. No NOTIFY
# (migration 0006 took it out): PostgreSQL queues notifications under one database-wide lock
# at commit, which made concurrent committers wait for each other; readers poll the head.
_POSTGRES_INSERT = """\
        INSERT INTO {changes} (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT '{table}', '{op}', r.id, {session_id}, {agent_id}, {log_level} FROM {rows} AS r;
"""
_POSTGRES_FUNCTION = """\
CREATE OR REPLACE FUNCTION orchestrator_db_changes_{table}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
{delete}    ELSIF TG_OP = 'UPDATE' THEN
{update}    ELSE
{insert}    END IF;
    RETURN NULL;
END
$$;
"""
_POSTGRES_TRIGGER = """\
CREATE OR REPLACE TRIGGER changes_{table}_{op} AFTER {OP} ON {table}
    REFERENCING {AGE} TABLE AS {rows} FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_{table}();
"""


def _postgres_change_function(table: str, fields: ChangeFields) -> str:
    session_id, agent_id, log_level = _recorded("r", fields)
    inserts = {op: _POSTGRES_INSERT.format(
        changes=CHANGES_TABLE, table=table, op=op, session_id=session_id, agent_id=agent_id,
        log_level=log_level, rows=_transition_rows(op)) for op in CHANGE_OPS}
    return _POSTGRES_FUNCTION.format(table=table, **inserts)


def _transition_rows(op: str) -> str:
    return "old_rows" if op == "delete" else "new_rows"


def _postgres_change_triggers(table: str, fields: ChangeFields) -> str:
    parts = [_postgres_change_function(table, fields)]
    for op in CHANGE_OPS:
        parts.append(_POSTGRES_TRIGGER.format(
            table=table, op=op, OP=op.upper(), AGE="OLD" if op == "delete" else "NEW",
            rows=_transition_rows(op)))
    return "".join(parts)


def change_function_sql(dialect: Dialect) -> str:
    """Return migration 0006: the PostgreSQL trigger functions again, without NOTIFY.

    SQLite's triggers never notified anyone (readers poll ``data_version``): nothing to do there.
    """
    if dialect is Dialect.SQLITE:
        return ""
    return "\n".join(_postgres_change_function(_ident(table), fields)
                     for table, fields in CHANGE_FIELDS.items())


_GENERATED: dict[str, Callable[[Dialect], str]] = {
    "change_feed": change_trigger_sql, "aggregates": aggregate_sql,
    "change_feed_polled": change_function_sql, "session_keys": session_trigger_sql}


_DOLLAR_QUOTE = re.compile(r"\$[A-Za-z_]*\$")


def split_sql_script(script: str) -> list[str]:
    """Split a SQL script into statements (so they can run inside one transaction)."""

    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        # A PostgreSQL dollar-quoted body ($$ ... $$) holds semicolons that end nothing; SQLite's
        # completeness check does not know dollar quotes, so only ask it outside of one.
        if len(_DOLLAR_QUOTE.findall(buffer)) % 2 == 0 and sqlite3.complete_statement(buffer):
            text = buffer.strip()
            if _strip_comments(text):
                statements.append(text)
            buffer = ""
    if _strip_comments(buffer.strip()):
        raise SchemaError("schema script ends with an incomplete statement")
    return statements


def _strip_comments(text: str) -> str:
    return (
        "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
        .strip()
        .rstrip(";")
        .strip()
    )


def pending(migrations: list[Migration], applied: set[int]) -> list[Migration]:
    """Return the migrations to run, in order; SchemaError if the database is the newer one.

    Those not applied yet, and, when one is missing below a newer one that is recorded (its row
    in ``schema_migrations`` was deleted), every migration after it too: run alone it could undo
    what a later one changed (0005 creates an index that 0007 drops). Each migration is written
    to run twice safely (IF NOT EXISTS; SQLite's ADD COLUMN is skipped when the column is there),
    so running them again in order ends with the schema a new database gets. The caller records
    only the versions not in ``applied``.
    """
    newest = migrations[-1].version
    if applied and max(applied) > newest:
        raise SchemaError(
            f"the database schema (version {max(applied)}) is newer than this orchestrator-db "
            f"(version {newest}); upgrade the package",
            found_version=max(applied), newest_version=newest,
        )
    missing = [m.version for m in migrations if m.version not in applied]
    return [m for m in migrations if missing and m.version >= missing[0]]


# Is this database ours? ------------------------------------------------------------------------
#: The columns of our ``schema_migrations`` (both engines).
MIGRATIONS_COLUMNS: tuple[str, ...] = ("version", "name", "applied_at")
_SHOWN_VALUE = 40  # characters of a stored value quoted in a message


def not_ours_error(where: str, detail: str) -> SchemaError:
    """The error for a database that another program made (never advising ``upgrade``)."""
    return SchemaError(f"{where} is not an orchestrator-db database ({detail}); give "
                       "orchestrator-db a database of its own, or name the right one with "
                       "--db / --url", detail=detail)


def no_schema_error(where: str, option: str) -> NotFoundError:
    """The error for a database without our schema that a command must not create it in."""
    return NotFoundError(f"no orchestrator-db schema at {where}; create it with "
                         f"`orchestrator-db upgrade {option}`", path=where)


def applied_versions(where: str, columns: Sequence[str], versions: Iterable[object]) -> set[int]:
    """Return the versions recorded in ``schema_migrations``; SchemaError if it is not ours.

    Another program's table of that name (other columns, versions that are not positive whole
    numbers) would otherwise be compared with our versions (a TypeError) or migrated over.

    Args:
        where: the database, as messages name it.
        columns: the table's column names, in order.
        versions: the stored values of its ``version`` column.
    """
    if sorted(columns) != sorted(MIGRATIONS_COLUMNS):
        raise not_ours_error(where, f"its schema_migrations table has the columns "
                                    f"{', '.join(columns)}, not {', '.join(MIGRATIONS_COLUMNS)}")
    applied: set[int] = set()
    for version in versions:
        if type(version) is not int or version < 1:
            shown = repr(version)
            if len(shown) > _SHOWN_VALUE:
                shown = shown[:_SHOWN_VALUE] + "..."
            raise not_ours_error(where, f"its schema_migrations table holds the version "
                                        f"{shown}, not a positive whole number")
        applied.add(version)
    return applied


def read_migrated(migrations: Sequence[Migration], query: str) -> list[tuple[Any, ...]]:
    """Apply SQLite ``migrations`` to an empty in-memory database; return ``query``'s rows."""
    scratch = sqlite3.connect(":memory:")
    try:
        for migration in migrations:
            for statement in split_sql_script(migration.sql):
                scratch.execute(statement)
        return scratch.execute(query).fetchall()
    finally:
        scratch.close()


@cache
def schema_columns() -> dict[str, frozenset[str]]:
    """Each table our migrations make, with its final columns (the same names on both engines)."""
    rows = read_migrated(
        load_migrations(Dialect.SQLITE),
        "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p "
        "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'")
    tables: dict[str, set[str]] = {}
    for table, column in rows:
        tables.setdefault(table, set()).add(column)
    return {table: frozenset(columns) for table, columns in tables.items()}


def clash_error(where: str, migration: Migration, existing: Mapping[str, Sequence[str]],
                detail: str) -> SchemaError:
    """The error for a migration that failed on tables another program made.

    Args:
        where: the database, as messages name it.
        migration: the migration that failed.
        existing: the tables of the database that bear our tables' names, with their columns.
        detail: the driver's message.
    """
    ours = schema_columns()
    foreign = [f"{table} ({', '.join(columns)})" for table, columns in existing.items()
               if table in ours and not set(columns) <= ours[table]]
    reason = (f"its table(s) {', '.join(foreign)} have other columns than orchestrator-db's"
              if foreign else "its tables are not the ones orchestrator-db makes")
    return not_ours_error(where, f"{reason}, so migration {migration.version:04d}_"
                                 f"{migration.name} fails: {detail}")
