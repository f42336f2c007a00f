"""Copy a whole orchestrator database to another one: SQLite → PostgreSQL, and back (design §9).

How it keeps "nothing lost, nothing twice":

- Tables go in dependency order (parents first), rows in the stable order (created_at, id), in
  batches; each batch is one transaction on the destination, written with the engine's fast path
  (COPY on PostgreSQL, ``executemany`` on SQLite). Ids and timestamps are copied, not re-made.
- So an interrupted copy leaves each destination table holding a *prefix* of the source table.
  Re-running checks that it is one (same number of rows up to the destination's last (created_at,
  id), and that row exists in the source) and continues after it: resumable, never duplicated.
- A destination holding anything else is refused unless ``merge=True``, which adds only the rows
  whose ids the destination lacks (``ON CONFLICT (id) DO NOTHING``).
- Verification compares row counts and a SHA-256 over the canonical JSON of every row (public
  shape, (created_at, id) order) on both sides. For a table this run copied whole, the source
  side is hashed from the rows as they are copied (no second read of the source) and the
  destination is read back; a resumed or merged table is read again on both sides. Any
  difference raises ``VerificationError`` naming the table and the first differing row.
- ``cost_rollups`` (no id: one row per day, session, agent and model) is copied after the five
  record tables as a whole, and compared as a multiset of rows.

Measured (benchmarks/bench_copy.py, 1M agent_logs rows SQLite → PostgreSQL on a shared 2-core
machine): the copy runs at 0.74× a bare ``copy_records_to_table`` of the same rows held in memory,
0.37× including the verification. On SQLite the source is read as driver tuples with JSON left as
its stored text (``JsonText``), so it is never decoded and encoded again on the way.

Stop writers on the source while it is copied: rows changed after they were copied are reported
by the verification, not copied again.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from .config import Dialect, parse_url
from .errors import OrchestratorDBError, SchemaError
from .jsoncodec import JsonText
from .manager import CoreManager as DatabaseManager
from .models import format_ts, parse_ts
from .tables import COLUMNS, JSON_FIELDS, TIME_FIELDS

# Dependency order: every table comes after the tables it references.
COPY_TABLES: tuple[str, ...] = (
    "orchestrator_agents", "agents", "prompts", "agent_logs", "system_logs",
)
# What pruned prompts cost, per day (migration 0003). It has no id: it is small, copied whole
# after the records, and compared as a multiset of rows.
ROLLUP_TABLE = "cost_rollups"
ROLLUP_COLUMNS: tuple[str, ...] = (
    "day", "session_id", "agent_id", "orchestrator_agent_id", "model", "prompts",
    "tokens_input", "tokens_output", "cost_usd", "updated_at",
)
DEFAULT_BATCH_SIZE = 5_000
VERIFY_BATCH_SIZE = 5_000
MERGE_LOOKUP_SIZE = 1_000  # ids per "WHERE id IN (...)" when verifying a merge

Mode = Literal["new", "resume", "merge"]
# progress(phase, table, done, total) with phase "copy" or "verify"
ProgressCallback = Callable[[str, str, int, int], None]
Row = dict[str, Any]
Source = str | os.PathLike[str] | DatabaseManager


class CopyError(OrchestratorDBError):
    """The copy cannot be done as asked (same database, missing source, foreign data...)."""


class CopyInterrupted(CopyError):
    """The copy stopped early on request (``stop_after_batches``); re-run it to continue."""


class VerificationError(CopyError):
    """After the copy the destination does not hold exactly the source's rows."""


@dataclass
class TableCopy:
    """What happened to one table."""

    table: str
    source_rows: int = 0
    existing_rows: int = 0  # in the destination before this run
    copied_rows: int = 0  # written by this run
    destination_rows: int | None = None  # after the run, when verified
    checksum: str | None = None  # SHA-256 of the source rows, equal on both sides if verified


@dataclass
class CopyResult:
    """The outcome of ``copy_database``."""

    source: str
    destination: str
    mode: Mode
    tables: list[TableCopy] = field(default_factory=list)
    verified: bool = False

    @property
    def copied_rows(self) -> int:
        """Rows written by this run, over every table."""
        return sum(t.copied_rows for t in self.tables)


# canonical form ------------------------------------------------------------------------------
# One reusable C encoder (json.dumps would build a new encoder for every row): sorted keys, no
# ASCII escaping, compact separators.
_encode = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, None, json.encoder.encode_basestring, None, ":", ",", True, False, True
) if json.encoder.c_make_encoder is not None else None  # type: ignore[attr-defined]


def _dumps(values: list[Any]) -> str:
    if _encode is not None:
        return "".join(_encode(values, 0))
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _canon_json(value: Any) -> Any:
    # PostgreSQL's jsonb keeps numbers as numeric, so a float written as 1e+20 comes back as
    # 100000000000000000000, an int. Python writes every float ≥ 1e16 (all integral) with "e+",
    # so comparing those as ints is the only normalisation needed, and only when "e+" appears.
    if isinstance(value, float):
        return int(value) if abs(value) >= 1e16 else value
    if isinstance(value, dict):
        return {k: _canon_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canon_json(v) for v in value]
    return value


def _canon_time(value: Any) -> Any:
    # Rows written by this package are already canonical (32 characters ending in +00:00); only
    # rows written by other tools need re-formatting.
    if value is None or (isinstance(value, str) and len(value) == 32 and value.endswith("+00:00")):
        return value
    try:
        return format_ts(parse_ts(value))
    except (TypeError, ValueError):
        return value


@functools.cache
def _indexes(columns: tuple[str, ...]) -> tuple[list[int], list[int]]:
    return ([i for i, c in enumerate(columns) if c in TIME_FIELDS],
            [i for i, c in enumerate(columns) if c in JSON_FIELDS])


def _line(values: list[Any], times: list[int], jsons: list[int]) -> str:
    for i in times:
        value = values[i]
        # Rows written by this package are canonical already: 32 characters ending in +00:00.
        if value is not None and not (len(value) == 32 and value.endswith("+00:00")):
            values[i] = _canon_time(value)
    text = _dumps(values)
    if "e+" in text:
        for i in jsons:
            values[i] = _canon_json(values[i])
        text = _dumps(values)
    return text


def canonical_line(row: Row, columns: Sequence[str]) -> bytes:
    """Return one row as canonical JSON (one line), the unit of the checksums."""
    times, jsons = _indexes(tuple(columns))
    return _line([row.get(c) for c in columns], times, jsons).encode() + b"\n"


def hash_rows(hasher: Any, rows: list[Row], columns: Sequence[str]) -> None:
    """Feed rows to a hashlib hasher, as ``canonical_line`` would one by one (but faster)."""
    times, jsons = _indexes(tuple(columns))
    lines = [_line([row[c] for c in columns], times, jsons) for row in rows]
    lines.append("")
    hasher.update("\n".join(lines).encode())


def _hash_records(hasher: Any, records: list[list[Any]], columns: Sequence[str], *,
                  json_text: bool) -> None:
    """``hash_rows`` for records (lists in column order), whose JSON may still be text."""
    times, jsons = _indexes(tuple(columns))
    lines = []
    for record in records:
        values = list(record)
        if json_text:
            for i in jsons:
                if values[i] is not None:
                    try:
                        values[i] = json.loads(values[i])
                    except ValueError as exc:
                        raise CopyError(
                            f"row {values[0]} holds invalid JSON in {columns[i]} ({exc}); fix or "
                            "delete it, then run the copy again"
                        ) from exc
        lines.append(_line(values, times, jsons))
    lines.append("")
    hasher.update("\n".join(lines).encode())


# reading ---------------------------------------------------------------------------------------
def _select_sql(db: DatabaseManager, table: str, after: tuple[str, str] | None, limit: int
                ) -> tuple[str, list[Any]]:
    store = db.store
    q = store.query()
    sql = f"SELECT {', '.join(COLUMNS[table])} FROM {table}"
    if after is not None:
        created_at, row_id = after
        ts = store.ts(parse_ts(created_at))
        sql += f" WHERE (created_at, id) > ({q.p(ts)}, {q.p(row_id)})"
    sql += f" ORDER BY created_at, id LIMIT {q.p(limit)}"
    return sql, q.params


async def _read(db: DatabaseManager, table: str, after: tuple[str, str] | None, limit: int
                ) -> list[Row]:
    sql, params = _select_sql(db, table, after, limit)
    # heavy: on SQLite the batch is read on the store's thread, so it overlaps the writes.
    return await db.store.fetch(sql, params, heavy=True)


async def _read_records(db: DatabaseManager, table: str, after: tuple[str, str] | None,
                        limit: int) -> list[list[Any]]:
    """Read a batch as records: lists in column order.

    On SQLite this is the fast path: plain tuples from the driver on the store's thread, JSON
    columns left as the stored text (it goes to the destination as it is, never decoded and
    encoded again). Elsewhere the public rows are turned into records (JSON decoded).
    """
    dialect = db.dialect
    if dialect is Dialect.SQLITE:
        sql, params = _select_sql(db, table, after, limit)

        def fetch(conn: Any) -> list[list[Any]]:
            return [list(r) for r in conn.execute(sql, params)]
        return await db.store.run(fetch, write=False, heavy=True)  # type: ignore[attr-defined, no-any-return]
    elif dialect is Dialect.POSTGRES:
        columns = COLUMNS[table]
        return [[r[c] for c in columns] for r in await _read(db, table, after, limit)]
    else:  # pragma: no cover
        raise AssertionError(dialect)


async def _scan(db: DatabaseManager, table: str, batch_size: int) -> AsyncIterator[list[Row]]:
    """Yield every row in (created_at, id) order, in batches; the next one is read meanwhile."""
    pending = asyncio.ensure_future(_read(db, table, None, batch_size))
    try:
        while True:
            rows = await pending
            if not rows:
                return
            if len(rows) == batch_size:
                after = (rows[-1]["created_at"], rows[-1]["id"])
                pending = asyncio.ensure_future(_read(db, table, after, batch_size))
            yield rows
            if len(rows) < batch_size:
                return
    finally:
        if not pending.done():
            pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)


async def _count(db: DatabaseManager, table: str) -> int:
    rows = await db.store.fetch(f"SELECT count(*) AS n FROM {table}", heavy=True)
    return int(rows[0]["n"])


async def _last_key(db: DatabaseManager, table: str) -> tuple[str, str] | None:
    row = await db.store.fetchone(
        f"SELECT created_at, id FROM {table} ORDER BY created_at DESC, id DESC LIMIT 1"
    )
    return None if row is None else (row["created_at"], row["id"])


async def _is_prefix(src: DatabaseManager, table: str, dst_rows: int, last: tuple[str, str]
                     ) -> bool:
    """Whether the destination's rows can be the first ``dst_rows`` rows of the source."""
    store = src.store
    q = store.query()
    ts = store.ts(parse_ts(last[0]))
    found = await store.fetchone(
        f"SELECT created_at FROM {table} WHERE id = {q.p(last[1])}", q.params
    )
    if found is None or _canon_time(found["created_at"]) != _canon_time(last[0]):
        return False
    q = store.query()
    rows = await store.fetch(
        f"SELECT count(*) AS n FROM {table} WHERE (created_at, id) <= ({q.p(ts)}, {q.p(last[1])})",
        q.params, heavy=True,
    )
    return int(rows[0]["n"]) == dst_rows


# writing ---------------------------------------------------------------------------------------
def _to_datetime(value: str) -> datetime:
    # The fixed shape every stored timestamp has: no need for parse_ts's general path.
    if len(value) == 32 and value.endswith("+00:00"):
        return datetime.fromisoformat(value)
    return parse_ts(value)


def _converter(db: DatabaseManager, table: str, *, json_text: bool
               ) -> Callable[[list[Any]], list[Any]]:
    """Return a function turning a source record into the destination driver's parameters.

    The destination store's own ``json``/``ts`` encoders are used, as for every other write;
    JSON that is still text (``json_text``) is handed over as ``JsonText``, which they keep.
    """
    store = db.store
    to_json, to_ts = store.json, store.ts
    times, jsons = _indexes(COLUMNS[table])

    def convert(record: list[Any]) -> list[Any]:
        values = list(record)
        for i in jsons:
            value = values[i]
            if value is not None:
                values[i] = to_json(JsonText(value) if json_text else value)
        for i in times:
            if values[i] is not None:
                values[i] = to_ts(_to_datetime(values[i]))
        return values
    return convert


def _insert_sql(db: DatabaseManager, table: str, *, skip_existing: bool,
                columns: Sequence[str] | None = None) -> str:
    q = db.store.query()
    columns = columns or COLUMNS[table]
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) "
           f"VALUES ({', '.join(q.p(None) for _ in columns)})")
    if skip_existing:
        sql += " ON CONFLICT (id) DO NOTHING"
    return sql


async def _write(db: DatabaseManager, table: str, rows: list[list[Any]], *, merge: bool,
                 columns: Sequence[str] | None = None) -> None:
    store = db.store
    dialect = store.dialect
    if dialect is Dialect.POSTGRES and not merge:
        await store.copy_records(table, columns or COLUMNS[table], rows)  # type: ignore[attr-defined]
    elif dialect is Dialect.POSTGRES or dialect is Dialect.SQLITE:
        await store.executemany(_insert_sql(db, table, skip_existing=merge, columns=columns),
                                rows)
    else:  # pragma: no cover
        raise AssertionError(dialect)


# cost rollups -----------------------------------------------------------------------------------
@dataclass
class _Rollups:
    """Both sides of the rollup table, as canonical lines, and what the copy must add."""

    source: list[tuple[str, Row]]
    missing: list[Row]  # source rows the destination lacks
    extra: int  # destination rows that are not in the source


async def _has_table(db: DatabaseManager, table: str) -> bool:
    try:
        await _count(db, table)
    except SchemaError:
        return False
    return True


async def _rollup_rows(db: DatabaseManager) -> list[tuple[str, Row]]:
    rows = await db.store.fetch(f"SELECT {', '.join(ROLLUP_COLUMNS)} FROM {ROLLUP_TABLE}",
                                heavy=True)
    out = []
    for row in rows:
        day = row["day"]
        row["day"] = day.isoformat() if isinstance(day, date) else str(day)
        row["updated_at"] = _canon_time(row["updated_at"])
        out.append((_dumps([row[c] for c in ROLLUP_COLUMNS]), row))
    return out


async def _plan_rollups(src: DatabaseManager, dst: DatabaseManager) -> _Rollups:
    source, existing = await _rollup_rows(src), await _rollup_rows(dst)
    have = Counter(line for line, _ in existing)
    missing = []
    for line, row in source:
        if have[line]:
            have[line] -= 1
        else:
            missing.append(row)
    return _Rollups(source, missing, sum(have.values()))


def _rollup_params(db: DatabaseManager, row: Row) -> list[Any]:
    store = db.store
    values = [row[c] for c in ROLLUP_COLUMNS]
    values[0] = db.store.day_param(date.fromisoformat(row["day"]))
    values[-1] = store.ts(parse_ts(row["updated_at"]))
    return values


async def _verify_rollups(dst: DatabaseManager, t: TableCopy, plan: _Rollups, *,
                          merge: bool) -> None:
    now = Counter(line for line, _ in await _rollup_rows(dst))
    want = Counter(line for line, _ in plan.source)
    missing = want - now
    extra = now - want
    t.destination_rows = sum(now.values())
    t.checksum = hashlib.sha256("\n".join(sorted(want.elements())).encode()).hexdigest()
    if missing or (extra and not merge):
        raise VerificationError(
            f"verification failed for {ROLLUP_TABLE}: {sum(missing.values())} source row(s) "
            f"missing, {sum(extra.values())} unexpected row(s) in the destination",
            table=ROLLUP_TABLE,
        )


# the copy --------------------------------------------------------------------------------------
def _open(url: Source, role: str, *, must_exist: bool) -> DatabaseManager:
    if isinstance(url, DatabaseManager):
        return url
    target = parse_url(os.fspath(url))
    if must_exist and target.path is not None and not target.path.is_file():
        raise CopyError(f"{role} database {target.path} does not exist")
    return DatabaseManager(url=target.url)


def _same_database(a: DatabaseManager, b: DatabaseManager) -> bool:
    if a.target.path is not None and b.target.path is not None:
        try:
            return os.path.samefile(a.target.path, b.target.path)
        except OSError:
            return a.target.path.resolve() == b.target.path.resolve()
    return a.target.url == b.target.url


async def copy_database(
    source: Source,
    destination: Source,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    merge: bool = False,
    verify: bool = True,
    progress: ProgressCallback | None = None,
    stop_after_batches: int | None = None,
) -> CopyResult:
    """Copy every record of ``source`` into ``destination`` and verify the result.

    Args:
        source, destination: database URLs (``sqlite:///path``, ``postgresql://...``, or a
            SQLite path), or ``DatabaseManager`` objects (connected or not; left as found).
        batch_size: rows per destination transaction.
        merge: allow a destination that already holds other records; only the rows whose ids
            it lacks are added.
        verify: compare row counts and checksums of both sides at the end.
        progress: called as ``progress(phase, table, done, total)`` after each batch.
        stop_after_batches: stop with ``CopyInterrupted`` after this many batches (to test or
            to split a long copy; running the copy again continues where it stopped).

    Raises:
        CopyError: same database on both sides, missing source, or a destination holding
            other data without ``merge``.
        CopyInterrupted: ``stop_after_batches`` was reached.
        VerificationError: the destination differs from the source after the copy.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CopyError(f"batch_size must be a whole number ≥ 1, got {batch_size!r}")
    src = _open(source, "source", must_exist=True)
    dst = _open(destination, "destination", must_exist=False)
    if _same_database(src, dst):
        raise CopyError("source and destination are the same database")
    opened: list[DatabaseManager] = []
    try:
        for db in (src, dst):
            if not db.is_connected:
                await db.connect()
                opened.append(db)
        return await _copy(src, dst, batch_size=batch_size, merge=merge, verify=verify,
                           progress=progress, stop_after_batches=stop_after_batches)
    finally:
        for db in opened:
            await db.close()


async def _copy(src: DatabaseManager, dst: DatabaseManager, *, batch_size: int, merge: bool,
                verify: bool, progress: ProgressCallback | None,
                stop_after_batches: int | None) -> CopyResult:
    tables = [TableCopy(t) for t in COPY_TABLES]
    starts: dict[str, tuple[str, str] | None] = {}
    foreign: list[str] = []
    for t in tables:
        t.source_rows = await _count(src, t.table)
        t.existing_rows = await _count(dst, t.table)
        starts[t.table] = None
        if t.existing_rows and not merge:
            last = await _last_key(dst, t.table)
            assert last is not None
            if await _is_prefix(src, t.table, t.existing_rows, last):
                starts[t.table] = last
            else:
                foreign.append(f"{t.table}: {t.existing_rows:,} rows")
    rollups: _Rollups | None = None
    if await _has_table(src, ROLLUP_TABLE) and await _has_table(dst, ROLLUP_TABLE):
        rollups = await _plan_rollups(src, dst)
        rt = TableCopy(ROLLUP_TABLE, source_rows=len(rollups.source),
                       existing_rows=len(rollups.source) - len(rollups.missing) + rollups.extra)
        tables.append(rt)
        if rollups.extra and not merge:
            foreign.append(f"{ROLLUP_TABLE}: {rollups.extra:,} rows")
    if foreign:
        raise CopyError(
            f"the destination already holds data that is not an interrupted copy of this source "
            f"(in {', '.join(foreign)}); pass --merge (merge=True) to add the source's rows to it"
        )
    has_data = any(t.existing_rows for t in tables)
    mode: Mode = "merge" if merge and has_data else "resume" if has_data else "new"
    result = CopyResult(src.target.display(), dst.target.display(), mode, tables)

    batches = 0
    # The source side of the checksum of a table copied whole by this run is taken from the rows
    # as they are copied, so the verification only has to read the destination again.
    hashes: dict[str, Any] = {}
    for t in tables:
        if t.table == ROLLUP_TABLE:
            continue
        columns = COLUMNS[t.table]
        json_text = src.dialect is Dialect.SQLITE  # see _read_records
        convert = _converter(dst, t.table, json_text=json_text)
        created = columns.index("created_at")
        after = starts[t.table]
        hasher = hashlib.sha256() if verify and not t.existing_rows else None
        done = 0 if merge else t.existing_rows
        if progress:
            progress("copy", t.table, done, t.source_rows)
        pending = asyncio.ensure_future(_read_records(src, t.table, after, batch_size))
        # One write in flight at a time (batches land in order, so the destination always holds
        # a prefix); the next batch is read, converted and hashed while it runs.
        write: asyncio.Future[None] | None = None
        in_flight, first_id = 0, None
        try:
            while True:
                records = await pending
                if records:
                    after = (records[-1][created], records[-1][0])
                    pending = asyncio.ensure_future(
                        _read_records(src, t.table, after, batch_size))
                    params = [convert(r) for r in records]
                    if hasher is not None:
                        _hash_records(hasher, records, columns, json_text=json_text)
                if write is not None:
                    try:
                        await write
                    except OrchestratorDBError as exc:
                        raise CopyError(
                            f"could not write a batch of {t.table} (first row {first_id}): {exc}",
                            table=t.table,
                        ) from exc
                    write = None
                    t.copied_rows += in_flight
                    done += in_flight
                    if progress:
                        progress("copy", t.table, done, max(t.source_rows, done))
                    batches += 1
                    if stop_after_batches is not None and batches >= stop_after_batches:
                        raise CopyInterrupted(
                            f"stopped after {batches} batch(es) as asked; run the copy again "
                            "to continue"
                        )
                if not records:
                    break
                write = asyncio.ensure_future(_write(dst, t.table, params, merge=merge))
                in_flight, first_id = len(records), records[0][0]
        finally:
            for future in (pending, write):
                if future is not None and not future.done():
                    future.cancel()
            # Reap them so an error (or the cancellation) is not reported as never retrieved.
            await asyncio.gather(*(f for f in (pending, write) if f is not None),
                                 return_exceptions=True)
        if hasher is not None:
            hashes[t.table] = hasher
        if merge:
            t.copied_rows = await _count(dst, t.table) - t.existing_rows

    if rollups is not None and rollups.missing:
        await _write(dst, ROLLUP_TABLE, [_rollup_params(dst, r) for r in rollups.missing],
                     merge=False, columns=ROLLUP_COLUMNS)
        tables[-1].copied_rows = len(rollups.missing)
        if progress:
            progress("copy", ROLLUP_TABLE, len(rollups.source), len(rollups.source))

    if verify:
        for t in tables:
            if t.table == ROLLUP_TABLE:
                assert rollups is not None
                await _verify_rollups(dst, t, rollups, merge=merge)
            elif t.table in hashes:
                await _verify_copied(src, dst, t, hashes[t.table], progress)
            elif merge and t.existing_rows:
                await _verify_merge(src, dst, t, progress)
            else:
                await _verify_equal(src, dst, t, progress)
        result.verified = True
    return result


# verification ---------------------------------------------------------------------------------
async def _rows(db: DatabaseManager, table: str) -> AsyncIterator[Row]:
    async for batch in _scan(db, table, VERIFY_BATCH_SIZE):
        for row in batch:
            yield row


async def _verify_copied(src: DatabaseManager, dst: DatabaseManager, t: TableCopy,
                         source_hash: Any, progress: ProgressCallback | None) -> None:
    """The destination holds exactly the rows this run read from the source, nothing else."""
    columns = COLUMNS[t.table]
    now = await _count(src, t.table)
    if now != t.copied_rows:
        raise VerificationError(
            f"verification failed for {t.table}: the source changed during the copy "
            f"({t.copied_rows:,} rows copied, {now:,} there now); stop its writers and run the "
            "copy again to continue", table=t.table,
        )
    digest = hashlib.sha256()
    count = 0
    async for batch in _scan(dst, t.table, VERIFY_BATCH_SIZE):
        hash_rows(digest, batch, columns)
        count += len(batch)
        if progress:
            progress("verify", t.table, count, max(t.copied_rows, count))
    if count == t.copied_rows and digest.digest() == source_hash.digest():
        t.source_rows = t.destination_rows = count
        t.checksum = digest.hexdigest()
        return
    # Something differs: compare both sides row by row to say what (this raises).
    await _verify_equal(src, dst, t, None)
    raise VerificationError(  # pragma: no cover - the source changed again meanwhile
        f"verification failed for {t.table}: the destination differs from the rows copied",
        table=t.table,
    )


async def _verify_equal(src: DatabaseManager, dst: DatabaseManager, t: TableCopy,
                        progress: ProgressCallback | None) -> None:
    """Both sides hold the same rows: same count, same checksum, compared row by row."""
    columns = COLUMNS[t.table]
    hashes = hashlib.sha256(), hashlib.sha256()
    counts = [0, 0]
    first_difference: str | None = None
    src_rows, dst_rows = _scan(src, t.table, VERIFY_BATCH_SIZE), _scan(dst, t.table,
                                                                         VERIFY_BATCH_SIZE)
    src_batch: list[Row] = []
    dst_batch: list[Row] = []
    src_done = dst_done = False
    total = t.source_rows
    while True:
        # Refill whichever side ran dry, both at once when both did.
        need_src, need_dst = not src_batch and not src_done, not dst_batch and not dst_done
        got = await asyncio.gather(
            _next(src_rows) if need_src else _none(), _next(dst_rows) if need_dst else _none()
        )
        if need_src:
            src_batch = got[0] or []
            src_done = got[0] is None
        if need_dst:
            dst_batch = got[1] or []
            dst_done = got[1] is None
        if not src_batch and not dst_batch:
            break
        n = min(len(src_batch), len(dst_batch))
        for a, b in zip(src_batch[:n], dst_batch[:n], strict=True):
            line_a, line_b = canonical_line(a, columns), canonical_line(b, columns)
            hashes[0].update(line_a)
            hashes[1].update(line_b)
            if first_difference is None and line_a != line_b:
                first_difference = _describe(t.table, a, b)
        counts[0] += n
        counts[1] += n
        src_batch, dst_batch = src_batch[n:], dst_batch[n:]
        # One side ended: the rest of the other side is extra (or missing).
        if src_done and not src_batch and dst_batch:
            if first_difference is None:
                first_difference = (f"row {dst_batch[0]['id']} is in the destination but not "
                                    "in the source")
            for b in dst_batch:
                hashes[1].update(canonical_line(b, columns))
            counts[1] += len(dst_batch)
            dst_batch = []
        if dst_done and not dst_batch and src_batch:
            if first_difference is None:
                first_difference = f"row {src_batch[0]['id']} is missing from the destination"
            for a in src_batch:
                hashes[0].update(canonical_line(a, columns))
            counts[0] += len(src_batch)
            src_batch = []
        if progress:
            progress("verify", t.table, counts[0], max(total, counts[0]))
    t.source_rows, t.destination_rows = counts
    t.checksum = hashes[0].hexdigest()
    if counts[0] != counts[1] or hashes[0].digest() != hashes[1].digest():
        raise VerificationError(
            f"verification failed for {t.table}: source has {counts[0]:,} rows "
            f"(sha256 {hashes[0].hexdigest()[:12]}), destination {counts[1]:,} "
            f"(sha256 {hashes[1].hexdigest()[:12]}); first difference: {first_difference}",
            table=t.table, source_rows=counts[0], destination_rows=counts[1],
        )


async def _next(it: AsyncIterator[list[Row]]) -> list[Row] | None:
    try:
        return await it.__anext__()
    except StopAsyncIteration:
        return None


async def _none() -> None:
    return None


def _describe(table: str, a: Row, b: Row) -> str:
    if a.get("id") != b.get("id"):
        return f"source row {a.get('id')} vs destination row {b.get('id')} at the same position"
    columns = [c for c in COLUMNS[table]
               if canonical_line({c: a.get(c)}, (c,)) != canonical_line({c: b.get(c)}, (c,))]
    return f"row {a.get('id')} differs in {', '.join(columns) or 'its values'}"


def _ids_condition(db: DatabaseManager, ids: list[str]) -> tuple[str, list[Any]]:
    dialect = db.dialect
    q = db.store.query()
    if dialect is Dialect.POSTGRES:
        return f"id = ANY({q.p(ids)}::uuid[])", q.params
    elif dialect is Dialect.SQLITE:
        return f"id IN ({', '.join(q.p(i) for i in ids)})", q.params
    else:  # pragma: no cover
        raise AssertionError(dialect)


async def _verify_merge(src: DatabaseManager, dst: DatabaseManager, t: TableCopy,
                        progress: ProgressCallback | None) -> None:
    """Every source row is in the destination, unchanged (the destination may hold more)."""
    columns = COLUMNS[t.table]
    digest = hashlib.sha256()
    checked = 0
    missing: list[str] = []
    different: list[str] = []
    async for batch in _scan(src, t.table, MERGE_LOOKUP_SIZE):
        condition, params = _ids_condition(dst, [r["id"] for r in batch])
        found = {r["id"]: r for r in await dst.store.fetch(
            f"SELECT {', '.join(columns)} FROM {t.table} WHERE {condition}", params, heavy=True)}
        for row in batch:
            line = canonical_line(row, columns)
            digest.update(line)
            other = found.get(row["id"])
            if other is None:
                missing.append(row["id"])
            elif canonical_line(other, columns) != line:
                different.append(row["id"])
        checked += len(batch)
        if progress:
            progress("verify", t.table, checked, max(t.source_rows, checked))
    t.source_rows = checked
    t.destination_rows = await _count(dst, t.table)
    t.checksum = digest.hexdigest()
    if missing or different:
        parts = []
        if missing:
            parts.append(f"{len(missing):,} source row(s) missing (first {missing[0]})")
        if different:
            parts.append(f"{len(different):,} row(s) differ (first {different[0]}: "
                         "the destination holds another version)")
        raise VerificationError(
            f"verification failed for {t.table}: {'; '.join(parts)}", table=t.table,
        )


__all__ = [
    "COPY_TABLES",
    "ROLLUP_TABLE",
    "CopyError",
    "CopyInterrupted",
    "CopyResult",
    "TableCopy",
    "VerificationError",
    "canonical_line",
    "copy_database",
]
