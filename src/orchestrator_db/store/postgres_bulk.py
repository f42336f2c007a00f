"""Bulk loading on PostgreSQL (``copy``): defer index and trigger upkeep, COPY on two connections.

What a COPY of a million rows costs besides the rows themselves is upkeep: the primary key's
and three secondary indexes updated row by row, a foreign-key check per row, and the change-feed
trigger writing a change row per row. ``begin`` drops the indexes, foreign keys and primary keys
of the tables about to be filled and disables their change-feed triggers, recording the
statements that restore them in ``DEFERRED_TABLE`` in the same transaction; ``end`` runs them
(the index builds concurrently, each one sorting once instead of a million insertions) and
deletes each record in the transaction that restores it. So a load killed at any point leaves
the database either as it was or with its restore statements recorded, and the next ``copy``
(or ``end``) completes it.
Names and definitions come from the catalog (``pg_get_indexdef``, ``pg_get_constraintdef``),
never from the migration files.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from ..jsoncodec import JsonText, dumps_json
from ..models import format_ts, is_canonical_ts, parse_ts
from ..tables import CHANGE_COLUMNS, CHANGES_TABLE, JSON_FIELDS, TIME_FIELDS
from .digest import HASH_BITS, RowDigest
from .migrations import change_trigger_names
from .postgres_driver import DRIVER_ERRORS, translate_error

DEFERRED_TABLE = "orchestrator_db_deferred"
# Restore order: indexes (concurrently, primary keys' among them), then primary keys (each
# taking its index built before), then foreign keys (their check reads the tables once each),
# then the triggers.
_KINDS = ("index", "primary", "constraint", "trigger")
INDEX_BUILDS = 3  # concurrent CREATE INDEX statements
# Memory for each index build's sort (the server's default, 64 MB, spills 1M rows to disk).
INDEX_BUILD_MEMORY = "256MB"
DIGEST_WORKERS = 4  # parallel workers of each table's digest scan (the server caps them)

_CREATE_DEFERRED = f"""CREATE TABLE IF NOT EXISTS {DEFERRED_TABLE} (
    id        bigserial PRIMARY KEY,
    kind      text NOT NULL,
    statement text NOT NULL
)"""
# Each row: the statement that takes a thing away now, and the one that restores it later.
# Indexes that back a constraint (primary keys, UNIQUE columns) stay here: see _PRIMARY_KEYS.
_INDEXES = """
SELECT format('DROP INDEX %s', i.indexrelid::regclass) AS drop,
       pg_get_indexdef(i.indexrelid) AS restore
FROM pg_index AS i
WHERE i.indrelid = to_regclass($1)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)
ORDER BY i.indexrelid"""
_FOREIGN_KEYS = """
SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname) AS drop,
       format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
              pg_get_constraintdef(c.oid)) AS restore
FROM pg_constraint AS c
WHERE c.conrelid = to_regclass($1) AND c.contype = 'f'
ORDER BY c.oid"""
# A primary key no remaining foreign key references goes too (after the foreign keys of all
# the tables): a million insertions into its index cost the COPY about twice what building it
# once costs afterwards (measured: 1.9-2.4 s against 0.95 s + 0.45 s). Its ids are unique in
# the source, and a copy continues after the last row it wrote, so none arrives twice; should
# one, the restore fails, saying so, and the rows are there to look at. It comes back in two
# steps: its unique index, built concurrently with the others, then the constraint using it.
_PRIMARY_KEYS = """
SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname) AS drop,
       pg_get_indexdef(c.conindid) AS index,
       format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY USING INDEX %I', c.conrelid::regclass,
              c.conname, i.relname) AS restore
FROM pg_constraint AS c JOIN pg_class AS i ON i.oid = c.conindid
WHERE c.conrelid = to_regclass($1) AND c.contype = 'p'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS f WHERE f.confrelid = c.conrelid
                  AND f.contype = 'f')"""
_TRIGGERS = """
SELECT format('ALTER TABLE %s DISABLE TRIGGER %I', t.tgrelid::regclass, t.tgname) AS drop,
       format('ALTER TABLE %s ENABLE TRIGGER %I', t.tgrelid::regclass, t.tgname) AS restore
FROM pg_trigger AS t
WHERE t.tgrelid = to_regclass($1) AND t.tgname = ANY($2::text[]) AND t.tgenabled <> 'D'
ORDER BY t.oid"""


async def begin(pool: asyncpg.Pool, tables: Sequence[str]) -> None:
    """Drop the secondary indexes, foreign keys and (unreferenced) primary keys of ``tables``,
    disable their triggers."""
    triggers = sorted(change_trigger_names())
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_CREATE_DEFERRED)
        for table in tables:
            for kind, sql, args in (("index", _INDEXES, ()), ("constraint", _FOREIGN_KEYS, ()),
                                    ("trigger", _TRIGGERS, (triggers,))):
                for row in await conn.fetch(sql, table, *args):
                    await _defer(conn, row["drop"], (kind, row["restore"]))
        for table in tables:
            for row in await conn.fetch(_PRIMARY_KEYS, table):
                await _defer(conn, row["drop"], ("index", row["index"]),
                             ("primary", row["restore"]))


async def _defer(conn: asyncpg.Connection, drop: str, *restores: tuple[str, str]) -> None:
    """Record the statements that restore a thing (kind, statement), then take it away."""
    for kind, statement in restores:
        await conn.execute(f"INSERT INTO {DEFERRED_TABLE} (kind, statement) VALUES ($1, $2)",
                           kind, statement)
    await conn.execute(drop)  # sql-ok: generated from the catalog


async def interrupted(conn: asyncpg.Connection) -> bool:
    """Whether a bulk load's restore statements are recorded: a ``copy`` into this database is
    under way, or was killed before it ended."""
    if await conn.fetchval("SELECT to_regclass($1) IS NULL", DEFERRED_TABLE):
        return False
    return bool(await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {DEFERRED_TABLE})"))


async def end(pool: asyncpg.Pool) -> int:
    """Run the recorded restore statements, each record deleted with its statement's commit;
    return how many there were."""
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT to_regclass($1) IS NULL", DEFERRED_TABLE):
            return 0
        rows = await conn.fetch(f"SELECT id, kind, statement FROM {DEFERRED_TABLE} ORDER BY id")
    builds = asyncio.Semaphore(INDEX_BUILDS)

    async def restore(row: asyncpg.Record) -> None:
        async with builds, pool.acquire() as conn, conn.transaction():
            if row["kind"] == "index":
                await conn.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
                # The builds run side by side already: workers of their own would only take
                # the server's few worker processes from the digest scan running meanwhile.
                await conn.execute("SET LOCAL max_parallel_maintenance_workers = 0")
            await conn.execute(row["statement"])  # sql-ok: recorded from the catalog
            await conn.execute(f"DELETE FROM {DEFERRED_TABLE} WHERE id = $1", row["id"])

    for kind in _KINDS:
        await _gather([restore(r) for r in rows if r["kind"] == kind])
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"LOCK TABLE {DEFERRED_TABLE}")
        if not await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {DEFERRED_TABLE})"):
            await conn.execute(f"DROP TABLE {DEFERRED_TABLE}")
    return len(rows)


async def _gather(jobs: list[Any]) -> None:
    """Run the jobs concurrently; on a failure let the others finish, then raise the first."""
    results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


_NULL = "\\N"
# The first and last instants (which no write takes, but an older source file may hold), stored
# as -infinity and infinity as asyncpg writes a parameter, and read back as those instants.
_FIRST, _LAST = format_ts(datetime.min), format_ts(datetime.max)
_INFINITE_TEXT = {_FIRST: "-infinity", _LAST: "infinity"}
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


def copy_text(records: Sequence[Sequence[Any]], columns: Sequence[str]) -> bytes:
    """Return records (public shape: ids and times as text, JSON as ``JsonText`` or decoded)
    as the data of a ``COPY ... (FORMAT text)``.

    Cheaper in Python than binary COPY's values (no datetime, no per-value encoder call); the
    server parses the ids and times instead, on its own core. The batch is joined first and
    checked as a whole (counts of tabs, newlines and backslashes, in C); only when a value
    holds one of them are the values escaped one by one.
    """
    text, nulls = _joined(records, columns, escape=False)
    rows, width = len(records), len(columns)
    if (text.count("\t") != rows * (width - 1) or text.count("\n") != rows
            or "\r" in text or text.count("\\") != nulls):
        text, _ = _joined(records, columns, escape=True)
    return text.encode()


def _escaped(value: str) -> str:
    for char, escaped in _ESCAPES:
        if char in value:
            value = value.replace(char, escaped)
    return value


def _joined(records: Sequence[Sequence[Any]], columns: Sequence[str], *, escape: bool
            ) -> tuple[str, int]:
    """Return the rows as COPY text lines, and how many NULLs they hold."""
    times = [i for i, c in enumerate(columns) if c in TIME_FIELDS]
    jsons = [i for i, c in enumerate(columns) if c in JSON_FIELDS]
    others = [i for i, c in enumerate(columns) if c not in TIME_FIELDS and c not in JSON_FIELDS]
    lines = []
    nulls = 0
    null = None if escape else _NULL  # escaping: NULLs stay None until the values are escaped
    for record in records:
        fields = list(record)
        for i in jsons:
            value = fields[i]
            if value is None:
                fields[i] = null
                nulls += 1
            elif value.__class__ is not JsonText:
                fields[i] = dumps_json(value)
        for i in times:
            value = fields[i]
            if value is None:
                fields[i] = null
                nulls += 1
            else:
                if not is_canonical_ts(value):
                    value = format_ts(parse_ts(value))
                fields[i] = _INFINITE_TEXT.get(value, value)
        for i in others:
            value = fields[i]
            if value.__class__ is not str:
                if value is None:
                    fields[i] = null
                    nulls += 1
                else:
                    fields[i] = repr(value) if value.__class__ is float else str(value)
        if escape:
            fields = [_NULL if f is None else _escaped(f) for f in fields]
        lines.append("\t".join(fields))
    lines.append("")
    return "\n".join(lines), nulls


async def load(pool: asyncpg.Pool, table: str, columns: Sequence[str],
               batches: AsyncIterator[Sequence[Sequence[Any]]],
               committed: Callable[[int], None]) -> None:
    """COPY each batch in its own transaction on two connections, committing in order."""
    names = list(columns)
    async with pool.acquire() as first, pool.acquire() as second:
        idle = [first, second]
        # (transaction, its COPY, rows, connection) of the batches sent but not committed yet.
        open_: deque[tuple[Any, asyncio.Task[Any], int, asyncpg.Connection]] = deque()

        async def commit_oldest() -> None:
            transaction, task, n, conn = open_[0]
            await task
            await transaction.commit()
            open_.popleft()
            idle.append(conn)
            committed(n)

        try:
            async for rows in batches:
                if not rows:
                    continue
                data = copy_text(rows, names)
                if not idle:
                    await commit_oldest()
                conn = idle.pop()
                transaction = conn.transaction()
                await transaction.start()
                # No wait for the WAL flush at each commit: a server crash could lose only the
                # last batches, and the copy, run again, finds a shorter prefix and goes on.
                # What ends the copy (end_bulk_load) commits normally, flushing all before it.
                await conn.execute("SET LOCAL synchronous_commit = off")
                task = asyncio.ensure_future(
                    # A memoryview: asyncpg would take bytes for a file name.
                    conn.copy_to_table(table, source=memoryview(data), columns=names,
                                       format="text"))
                open_.append((transaction, task, len(rows), conn))
            while open_:
                await commit_oldest()
        except DRIVER_ERRORS as exc:
            raise translate_error(exc) from exc
        finally:
            # Whatever was not committed is rolled back, so the table keeps a prefix.
            for transaction, task, _, _ in open_:
                if not task.done():
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                # A broken connection: the server rolled it back.
                with contextlib.suppress(*DRIVER_ERRORS):
                    await transaction.rollback()


def _text_expression(column: str, kind: str) -> str:
    """Return the SQL of a plain column's value as the digest's text (``digest.py``)."""
    if kind == "timestamp with time zone":
        # to_char gives NULL for ±infinity: they stand for the first and last instants.
        return (f"""coalesce(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'), """
                f"CASE WHEN {column} > 'epoch' THEN '{_LAST}' WHEN {column} < 'epoch' "
                f"THEN '{_FIRST}' END)")
    if kind == "double precision":
        return f"encode(float8send({column}), 'hex')"
    if kind == "text":
        return column
    return f"{column}::text"


async def digests(pool: asyncpg.Pool, tables: Mapping[str, Sequence[str]]
                  ) -> dict[str, RowDigest]:
    """The rows' digests (``digest.py``), computed by the server, one (parallel) scan a table."""
    out = {}
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        # More workers than the server's default (2) for the one large scan of the copy.
        await conn.execute(f"SET LOCAL max_parallel_workers_per_gather = {DIGEST_WORKERS}")
        for table, columns in tables.items():
            types = dict(await conn.fetch(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped", table))
            plain = ", ".join(_text_expression(c, types.get(c, "")) for c in columns
                              if types.get(c) != "jsonb")
            line = f"array_to_json(ARRAY[{plain}]::text[])::text"
            for c in columns:
                if types.get(c) == "jsonb":
                    line += f" || E'\\t' || coalesce({c}::text, 'null')"
            digits = HASH_BITS // 4
            # fetch, not fetchrow: a row limit on the portal (fetchrow's) rules out a parallel
            # plan, and the scan takes twice as long on one core (measured: 2.7 s against 1.4 s
            # for 1M agent_logs rows on 2 cores).
            [row] = await conn.fetch(
                f"SELECT count(*) AS n, coalesce(sum(('x' || left(md5({line}), {digits}))"
                f"::bit({HASH_BITS})::bigint), 0) AS total FROM {table}")
            out[table] = RowDigest(int(row["n"]), int(row["total"]))
    return out


_SET_SEQUENCE = (
    "SELECT setval(seq, greatest($1::bigint, coalesce(pg_sequence_last_value(seq), 0))) "
    f"FROM (SELECT pg_get_serial_sequence('{CHANGES_TABLE}', 'position')::regclass AS seq) AS s")


async def continue_changes(pool: asyncpg.Pool, head: dict[str, Any]) -> None:
    """Write ``head`` as the newest change row unless the log reaches it; move the sequence."""
    columns = [*CHANGE_COLUMNS, "created_at"]
    values = [head[c] for c in CHANGE_COLUMNS] + [parse_ts(head["created_at"])]
    async with pool.acquire() as conn, conn.transaction():
        # Writers wait (their positions come after), readers do not.
        await conn.execute(f"LOCK TABLE {CHANGES_TABLE} IN SHARE ROW EXCLUSIVE MODE")
        newest = await conn.fetchval(f"SELECT coalesce(max(position), 0) FROM {CHANGES_TABLE}")
        if newest >= head["position"]:
            return
        await conn.execute(
            f"INSERT INTO {CHANGES_TABLE} ({', '.join(columns)}) "
            f"VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})", *values)
        await conn.execute(_SET_SEQUENCE, head["position"])


__all__ = ["DEFERRED_TABLE", "begin", "continue_changes", "copy_text", "digests", "end", "load"]
