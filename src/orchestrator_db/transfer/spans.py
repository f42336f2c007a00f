"""``otlp_spans``: the spans received over OpenTelemetry (migration 0004), copied after the rest.

Each row says which agent run holds a span's records, what its parent is and whether that
parent had arrived: with them, a span whose parent comes later (in another request, maybe
after the copy, to the new side) is still linked to it, and a span sent again is still
recognised. The table has no id and no creation time, so it is not copied like the record
tables:

- its rows are read in the source's key order, (span_id, trace_id), batch by batch (the next
  one read while this one is written), and written with ``ON CONFLICT (span_id, trace_id) DO
  NOTHING``: a copy run again after a stop, or a merge, adds what the destination lacks,
  whatever the first run stopped at, with no prefix to check;
- they go after the agents they reference, once the destination's keys are back (a few rows
  per agent run, not millions of logs: no bulk load needed);
- verification looks every source row up in the destination, a batch of span ids at a time,
  and, unless merging, checks that the destination holds no other row. The checksum is the
  order-free digest of ``store/digest.py``, the same on both engines.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from ..errors import OrchestratorDBError
from ..manager import CoreManager
from ..store.digest import RowDigest
from ..tables import OTLP_SPAN_COLUMNS, OTLP_SPANS_TABLE
from .errors import CopyError, VerificationError
from .results import ProgressCallback, TableCopy
from .rows import Key, Row, count, prefetched

LOOKUP_SIZE = 1_000  # span ids per "WHERE span_id IN (...)" when verifying
_SELECT = f"SELECT {', '.join(OTLP_SPAN_COLUMNS)} FROM {OTLP_SPANS_TABLE}"


def _record(row: Row) -> list[Any]:
    """A row as the same values on both engines (SQLite keeps the flags as 0 and 1)."""
    return [row["span_id"], row["trace_id"], row["parent_span_id"], str(row["agent_id"]),
            bool(row["is_agent"]), bool(row["orphan"])]


async def _read(db: CoreManager, after: Key | None, limit: int) -> list[list[Any]]:
    store = db.store
    q = store.query()
    sql = _SELECT
    if after is not None:
        sql += f" WHERE (span_id, trace_id) > ({q.p(after[0])}, {q.p(after[1])})"
    sql += f" ORDER BY span_id, trace_id LIMIT {q.p(limit)}"
    return [_record(r) for r in await store.fetch(sql, q.params, heavy=True)]


def _batches(db: CoreManager, batch_size: int) -> AsyncGenerator[list[list[Any]], None]:
    return prefetched(lambda after: _read(db, after, batch_size), lambda r: (r[0], r[1]), None,
                      batch_size)


async def copy_spans(src: CoreManager, dst: CoreManager, t: TableCopy, *, batch_size: int,
                     progress: ProgressCallback | None, written: Callable[[], None]) -> None:
    """Add the source's span rows the destination lacks, one transaction per batch."""
    done = 0
    if progress:
        progress("copy", t.table, done, t.source_rows)
    batches = _batches(src, batch_size)
    try:
        async for records in batches:
            try:
                await _write(dst, records)
            except OrchestratorDBError as exc:
                raise await _refused(dst, t, records, exc) from exc
            done += len(records)
            if progress:
                progress("copy", t.table, done, max(t.source_rows, done))
            written()
    finally:
        await batches.aclose()
    t.copied_rows = await count(dst, t.table) - t.existing_rows


async def _write(db: CoreManager, records: list[list[Any]]) -> None:
    await db.store.insert_many(OTLP_SPANS_TABLE, OTLP_SPAN_COLUMNS, records, skip_existing=True)


async def _refused(dst: CoreManager, t: TableCopy, records: list[list[Any]],
                   exc: OrchestratorDBError) -> CopyError:
    """Write a refused batch's rows one at a time; return the error naming the first refused.

    Rows written here are ones the copy writes anyway (a re-run skips them).
    """
    for record in records:
        try:
            await _write(dst, [record])
        except OrchestratorDBError as refused:
            return CopyError(f"could not write span {record[0]} of trace {record[1]} into "
                             f"{t.table}: {refused}", table=t.table)
    return CopyError(f"could not write a batch of {t.table} (first span {records[0][0]} of "
                     f"trace {records[0][1]}): {exc}", table=t.table)


async def verify_spans(src: CoreManager, dst: CoreManager, t: TableCopy, *, merge: bool,
                       progress: ProgressCallback | None) -> None:
    """Every source row is in the destination, unchanged; unless merging, nothing else is."""
    store = dst.store
    digest = RowDigest()
    missing: list[list[Any]] = []
    different: list[list[Any]] = []
    batches = _batches(src, LOOKUP_SIZE)
    try:
        async for records in batches:
            digest.add(records, OTLP_SPAN_COLUMNS)
            q = store.query()
            marks = ", ".join(q.p(span_id) for span_id in {r[0] for r in records})
            found = {(r[0], r[1]): r for r in map(_record, await store.fetch(
                f"{_SELECT} WHERE span_id IN ({marks})", q.params, heavy=True))}
            for record in records:
                other = found.get((record[0], record[1]))
                if other is None:
                    missing.append(record)
                elif other != record:
                    different.append(record)
            if progress:
                progress("verify", t.table, digest.rows, max(t.source_rows, digest.rows))
    finally:
        await batches.aclose()
    t.source_rows = digest.rows
    t.destination_rows = await count(dst, t.table)
    t.checksum = digest.hexdigest()
    problems = []
    if missing:
        problems.append(f"{len(missing):,} source row(s) missing (first: span {missing[0][0]} "
                        f"of trace {missing[0][1]})")
    if different:
        problems.append(f"{len(different):,} row(s) differ (first: span {different[0][0]} of "
                        f"trace {different[0][1]}: the destination holds another version)")
    extra = t.destination_rows - (digest.rows - len(missing))
    if extra and not merge:
        problems.append(f"{extra:,} unexpected row(s) in the destination")
    if problems:
        raise VerificationError(f"verification failed for {t.table}: {'; '.join(problems)}",
                                table=t.table, source_rows=digest.rows,
                                destination_rows=t.destination_rows)


__all__ = ["LOOKUP_SIZE", "copy_spans", "verify_spans"]
