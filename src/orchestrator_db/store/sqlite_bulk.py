"""Bulk loading on SQLite (``copy``): batches in order, no change rows, digests in a process.

SQLite cannot disable a trigger, and a database without its change-feed triggers is refused on
connect (``catalog.py``), so a copy killed midway would leave one that cannot be resumed. So the
triggers stay: each batch is inserted and the change rows its triggers wrote are deleted in the
same transaction, which leaves the change log as if the triggers had been off (positions are
not used up: ``changes.position`` is the rowid, the next one is the largest plus one).

A table's digest (``digest.py``) has SQLite build each row's plain values into their JSON array
in C (``json_array``); Python only puts the JSON columns in jsonb's form and hashes the line,
about 4 µs a row where doing it all in Python took 8. For a large table it runs in processes of
their own, so that it runs on other cores beside the copy instead of taking turns with it for
the interpreter lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import pickle
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import OrchestratorDBError
from ..models import parse_ts
from ..tables import CHANGE_COLUMNS, CHANGES_TABLE
from .digest import InvalidJsonError, RowDigest, layout
from .sqlite_batch import insert_rows

T = TypeVar("T")
DIGEST_BATCH = 5_000  # rows fetched at a time while hashing a table
# Tables holding more rows than this (together) are hashed in a process of their own: starting
# one costs about 0.3 s; hashing costs about 4 µs a row.
PROCESS_ROWS = 100_000
# More processes split the rows (by rowid), each on a core of its own; measured on the shared
# 2-core machine, a second one did not pay for its CPU and its 50 MB.
DIGEST_PROCESSES = 1


def insert_batch(conn: sqlite3.Connection, *, table: str, columns: Sequence[str],
                 rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (in the caller's transaction) and delete the change rows they made."""
    (newest,) = conn.execute(f"SELECT coalesce(max(position), 0) FROM {CHANGES_TABLE}").fetchone()
    insert_rows(conn, table, columns, rows)
    conn.execute(f"DELETE FROM {CHANGES_TABLE} WHERE position > ?", (newest,))


def _built_sql(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> str | None:
    """Return the query of ``RowDigest.add_built``'s rows: each row's plain array built in C
    by ``json_array`` (as UTF-8 bytes), its JSON columns, then its rowid when that array would
    not be the digest's (a float, a timestamp not in the package's shape, JSON that is not text:
    ``RowDigest.add`` hashes those rows), NULL otherwise. None for a table with a column of
    floats (SQLite prints them rounded): ``RowDigest.add`` hashes it all."""
    plain, times, _, jsons = layout(tuple(columns))
    declared = {row[1]: str(row[2]).upper() for row in conn.execute(
        f"SELECT * FROM pragma_table_info('{table}')")}
    # A column of text affinity holds no numbers (SQLite stores them as text there); checking
    # the type of every value of every column would cost about a third of the hashing.
    numeric = [columns[i] for i in plain
               if not any(k in declared.get(columns[i], "") for k in ("CHAR", "CLOB", "TEXT"))]
    if any(k in declared.get(c, "") for c in numeric for k in ("REAL", "FLOA", "DOUB")):
        return None
    odd = [f"typeof({c}) = 'real'" for c in numeric]
    odd += [f"{c} NOT GLOB '????-??-??T??:??:??.??????+00:00'"  # NULL: not odd
            for c in (columns[plain[j]] for j in times)]
    odd += [f"typeof({columns[i]}) NOT IN ('text', 'null')" for i in jsons]
    values = ", ".join(f"CAST({columns[i]} AS TEXT)" for i in plain)
    return (f"SELECT CAST(json_array({values}) AS BLOB)"
            f"{''.join(f', {columns[i]}' for i in jsons)}, "
            f"CASE WHEN {' OR '.join(odd) or 'false'} THEN rowid END FROM {table}")


def _digest_rows(conn: sqlite3.Connection, tables: dict[str, Sequence[str]], part: int,
                 parts: int) -> dict[str, RowDigest]:
    out = {}
    for table, columns in tables.items():
        result = RowDigest()
        where = ""
        if parts > 1:  # the rows whose rowid is ``part`` modulo ``parts`` (skipped in C)
            where = f" WHERE rowid % {int(parts)} = {int(part)}"
        odd: list[int] = []
        sql = _built_sql(conn, table, columns)
        if sql is None:
            out[table] = _hashed(conn, table, columns, where)
            continue
        try:
            cursor = conn.execute(sql + where)
            jsons = len(layout(tuple(columns))[3])
            while rows := cursor.fetchmany(DIGEST_BATCH):
                odd += result.add_built(rows, jsons)
        except ValueError:  # JSON that is not JSON: hash the row by row way, which says where
            result, odd = _hashed(conn, table, columns, where), []
        for start in range(0, len(odd), DIGEST_BATCH):
            ids = odd[start:start + DIGEST_BATCH]
            try:
                result.add(conn.execute(
                    f"SELECT {', '.join(columns)} FROM {table} "
                    f"WHERE rowid IN ({', '.join('?' for _ in ids)})", ids).fetchall(),
                    columns, json_text=True)
            except InvalidJsonError as exc:
                exc.table = table
                raise
        out[table] = result
    return out


def _hashed(conn: sqlite3.Connection, table: str, columns: Sequence[str], where: str
            ) -> RowDigest:
    """Return the digest of the rows computed in Python, row by row (``RowDigest.add``)."""
    result = RowDigest()
    cursor = conn.execute(f"SELECT {', '.join(columns)} FROM {table}{where}")
    try:
        while rows := cursor.fetchmany(DIGEST_BATCH):
            result.add(rows, columns, json_text=True)
    except InvalidJsonError as exc:
        exc.table = table
        raise
    return result


def digests(path: Path, tables: dict[str, Sequence[str]], busy_timeout_ms: int, part: int,
            parts: int) -> dict[str, RowDigest]:
    """Hash one part of the rows of each table, in one read transaction (in its own process)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA query_only = ON")  # it only reads; a write would be a bug
        conn.execute("BEGIN")  # one snapshot for every table
        out = _digest_rows(conn, tables, part, parts)
        conn.execute("COMMIT")
        return out
    finally:
        conn.close()


async def table_digests(path: Path, tables: dict[str, Sequence[str]], busy_timeout_ms: int,
                        run_here: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]
                        ) -> dict[str, RowDigest]:
    """Hash the tables: small ones through ``run_here`` (the store), large ones in processes."""
    rows = sum([await run_here(functools.partial(_largest_rowid, table=t)) for t in tables])
    if rows < PROCESS_ROWS:
        result: dict[str, RowDigest] = await run_here(
            functools.partial(_digest_rows, tables=tables, part=0, parts=1))
        return result
    try:
        async with asyncio.TaskGroup() as group:  # one failing cancels (kills) the others
            jobs = [group.create_task(in_process(digests, path, tables, busy_timeout_ms, part,
                                                 DIGEST_PROCESSES))
                    for part in range(DIGEST_PROCESSES)]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None  # the error itself, as from one process
    out = {table: RowDigest() for table in tables}
    for job in jobs:
        for table, part_digest in job.result().items():
            out[table].rows += part_digest.rows
            out[table].total += part_digest.total
    return out


def _largest_rowid(conn: sqlite3.Connection, *, table: str) -> int:
    return int(conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0])


# The child's program: this module, imported from where the parent found the package.
_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); "
          "from orchestrator_db.store.sqlite_bulk import _child; _child()")


async def in_process(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a new Python process (a second core), awaiting its result.

    ``fn`` must be a module-level function; it and its arguments go over a pipe, pickled, as do
    its result or its exception, raised here. Cancelling the call kills the process. A plain
    subprocess, not ``multiprocessing``: that would import the caller's ``__main__`` again in
    the child.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, str(Path(__file__).resolve().parents[2]),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await process.communicate(pickle.dumps((fn, args)))
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    try:
        ok, value = pickle.loads(out)
    except Exception:
        raise OrchestratorDBError(
            f"the process computing a digest ended without an answer (exit code "
            f"{process.returncode}): {err.decode(errors='replace').strip()[-500:]}") from None
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _child() -> None:
    """The entry point of ``in_process``'s process: call, answer (result or exception)."""
    fn, args = pickle.loads(sys.stdin.buffer.read())
    try:
        answer: tuple[bool, Any] = (True, fn(*args))
    except Exception as exc:  # handed to the parent, which raises it
        answer = (False, exc)
    sys.stdout.buffer.write(pickle.dumps(answer))


def continue_changes(conn: sqlite3.Connection, head: dict[str, Any], format_time: Any) -> None:
    """Write ``head`` as the newest change row unless the log already reaches its position."""
    (newest,) = conn.execute(f"SELECT coalesce(max(position), 0) FROM {CHANGES_TABLE}").fetchone()
    if newest >= head["position"]:
        return
    columns = [*CHANGE_COLUMNS, "created_at"]
    values = [head[c] for c in CHANGE_COLUMNS] + [format_time(parse_ts(head["created_at"]))]
    conn.execute(f"INSERT INTO {CHANGES_TABLE} ({', '.join(columns)}) "
                 f"VALUES ({', '.join('?' for _ in columns)})", values)


__all__ = [
    "DIGEST_BATCH",
    "DIGEST_PROCESSES",
    "PROCESS_ROWS",
    "continue_changes",
    "digests",
    "in_process",
    "insert_batch",
    "table_digests",
]
