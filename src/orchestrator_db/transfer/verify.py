"""After the copy: prove the destination holds the source's rows, or say which row differs.

Two cases, by the way a table was copied:

- copied whole or resumed (``verify_digest``): the digests of both sides are compared, each
  computed by its own store (PostgreSQL in one SQL scan, SQLite in a process of its own), the
  source's while its rows are copied. Only when they differ are both sides read again and
  compared row by row (``verify_equal``), to say which row differs;
- merged into other data (``verify_merge``): every source row is looked up by id in the
  destination, which may hold more.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from ..manager import CoreManager
from ..store.digest import RowDigest
from ..tables import COLUMNS
from .checksums import canonical_line
from .errors import VerificationError
from .results import ProgressCallback, TableCopy
from .rows import Row, count, scan

VERIFY_BATCH_SIZE = 5_000
MERGE_LOOKUP_SIZE = 1_000  # ids per "WHERE id IN (...)" when verifying a merge


async def verify_digest(src: CoreManager, dst: CoreManager, t: TableCopy, source: RowDigest,
                        target: RowDigest, progress: ProgressCallback | None) -> None:
    """Both sides hold the same rows: same count, same digest (``store/digest.py``).

    Each store hashed its own side (PostgreSQL in SQL, SQLite in a process of its own). When
    the digests differ, both sides are read again and compared row by row to say where: that
    comparison decides (a number one side spells differently, 2.50 and 2.5, is the same).
    """
    if source == target:
        t.source_rows = t.destination_rows = source.rows
    else:
        await verify_equal(src, dst, t, progress)  # raises, naming the first difference
    t.checksum = source.hexdigest()
    if progress:
        progress("verify", t.table, source.rows, source.rows)


async def verify_equal(src: CoreManager, dst: CoreManager, t: TableCopy,
                       progress: ProgressCallback | None) -> None:
    """Both sides hold the same rows: same count, same checksum, compared row by row."""
    columns = COLUMNS[t.table]
    hashes = hashlib.sha256(), hashlib.sha256()
    counts = [0, 0]
    first_difference: str | None = None
    src_rows = scan(src, t.table, VERIFY_BATCH_SIZE)
    dst_rows = scan(dst, t.table, VERIFY_BATCH_SIZE)
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
            f"(sha256 {hashes[1].hexdigest()[:12]}); first difference: {first_difference}. "
            "Was the source written to during the copy, or the destination? Running the copy "
            "again will not mend it (it continues after the rows the destination holds): stop "
            "the writers, empty the destination and copy again",
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


async def verify_merge(src: CoreManager, dst: CoreManager, t: TableCopy,
                       progress: ProgressCallback | None) -> None:
    """Every source row is in the destination, unchanged (the destination may hold more)."""
    columns = COLUMNS[t.table]
    store = dst.store
    digest = hashlib.sha256()
    checked = 0
    missing: list[str] = []
    different: list[str] = []
    async for batch in scan(src, t.table, MERGE_LOOKUP_SIZE):
        q = store.query()
        condition = store.ids_condition(q, [r["id"] for r in batch])
        found = {r["id"]: r for r in await store.fetch(
            f"SELECT {', '.join(columns)} FROM {t.table} WHERE {condition}", q.params,
            heavy=True)}
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
    t.destination_rows = await count(dst, t.table)
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
    "MERGE_LOOKUP_SIZE",
    "VERIFY_BATCH_SIZE",
    "verify_digest",
    "verify_equal",
    "verify_merge",
]
