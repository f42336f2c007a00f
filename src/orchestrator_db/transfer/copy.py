"""The copy itself: open both sides, plan (new, resume or merge), copy table by table, verify."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from ..config import parse_url
from ..errors import OrchestratorDBError
from ..manager import CoreManager
from ..tables import COLUMNS, ROLLUP_TABLE, TABLES
from .checksums import Hasher, hash_records
from .errors import CopyError, CopyInterrupted
from .results import CopyResult, Mode, ProgressCallback, TableCopy
from .rollups import Rollups, plan_rollups, verify_rollups, write_missing
from .rows import Key, converter, count, has_table, is_prefix, last_key, read_records, write
from .verify import verify_copied, verify_equal, verify_merge

# Dependency order: every table comes after the tables it references.
COPY_TABLES: tuple[str, ...] = TABLES
DEFAULT_BATCH_SIZE = 5_000

Source = str | os.PathLike[str] | CoreManager


def _open(url: Source, role: str, *, must_exist: bool) -> CoreManager:
    if isinstance(url, CoreManager):
        return url
    target = parse_url(os.fspath(url))
    if must_exist and target.path is not None and not target.path.is_file():
        raise CopyError(f"{role} database {target.path} does not exist")
    # A copy never changes what it reads: the source is opened read-only, never migrated.
    return CoreManager(url=target.url, read_only=must_exist)


def _same_database(a: CoreManager, b: CoreManager) -> bool:
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
    opened: list[CoreManager] = []
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


@dataclass
class _Plan:
    """What this run has to do: per table, where the copy starts; the rollups, if both have them."""

    tables: list[TableCopy]
    starts: dict[str, Key | None]
    rollups: Rollups | None


async def _plan(src: CoreManager, dst: CoreManager, *, merge: bool) -> _Plan:
    """Count both sides and find where an interrupted copy stopped; refuse foreign data."""
    tables = [TableCopy(t) for t in COPY_TABLES]
    starts: dict[str, Key | None] = {}
    foreign: list[str] = []
    for t in tables:
        t.source_rows = await count(src, t.table)
        t.existing_rows = await count(dst, t.table)
        starts[t.table] = None
        if t.existing_rows and not merge:
            last = await last_key(dst, t.table)
            assert last is not None
            if await is_prefix(src, t.table, t.existing_rows, last):
                starts[t.table] = last
            else:
                foreign.append(f"{t.table}: {t.existing_rows:,} rows")
    rollups: Rollups | None = None
    if await has_table(src, ROLLUP_TABLE) and await has_table(dst, ROLLUP_TABLE):
        rollups = await plan_rollups(src, dst)
        rt = TableCopy(ROLLUP_TABLE, source_rows=len(rollups.source),
                       existing_rows=len(rollups.source) - len(rollups.missing) + rollups.extra)
        tables.append(rt)
        if rollups.extra and not merge:
            foreign.append(f"{ROLLUP_TABLE}: {rollups.extra:,} rows")
    if foreign:
        raise CopyError(
            f"the destination already holds data that is not an interrupted copy of this source "
            f"(in {', '.join(foreign)}); pass merge=True to add the source's rows to it",
            field="merge",
        )
    return _Plan(tables, starts, rollups)


@dataclass
class _Batches:
    """Counts the batches written, over every table, to stop after ``limit`` of them."""

    limit: int | None
    done: int = 0

    def written(self) -> None:
        self.done += 1
        if self.limit is not None and self.done >= self.limit:
            raise CopyInterrupted(
                f"stopped after {self.done} batch(es) as asked; run the copy again to continue"
            )


async def _copy(src: CoreManager, dst: CoreManager, *, batch_size: int, merge: bool,
                verify: bool, progress: ProgressCallback | None,
                stop_after_batches: int | None) -> CopyResult:
    plan = await _plan(src, dst, merge=merge)
    tables = plan.tables
    has_data = any(t.existing_rows for t in tables)
    mode: Mode = "merge" if merge and has_data else "resume" if has_data else "new"
    result = CopyResult(src.target.display(), dst.target.display(), mode, tables)

    batches = _Batches(stop_after_batches)
    # The source side of the checksum of a table copied whole by this run is taken from the rows
    # as they are copied, so the verification only has to read the destination again.
    hashes: dict[str, Hasher] = {}
    for t in tables:
        if t.table == ROLLUP_TABLE:
            continue
        hasher = hashlib.sha256() if verify and not t.existing_rows else None
        await _copy_table(src, dst, t, plan.starts[t.table], batch_size=batch_size, merge=merge,
                          hasher=hasher, progress=progress, batches=batches)
        if hasher is not None:
            hashes[t.table] = hasher
        if merge:
            t.copied_rows = await count(dst, t.table) - t.existing_rows

    rollups = plan.rollups
    if rollups is not None and rollups.missing:
        await write_missing(dst, rollups)
        tables[-1].copied_rows = len(rollups.missing)
        if progress:
            progress("copy", ROLLUP_TABLE, len(rollups.source), len(rollups.source))

    if verify:
        for t in tables:
            if t.table == ROLLUP_TABLE:
                assert rollups is not None
                await verify_rollups(dst, t, rollups, merge=merge)
            elif t.table in hashes:
                await verify_copied(src, dst, t, hashes[t.table], progress)
            elif merge and t.existing_rows:
                await verify_merge(src, dst, t, progress)
            else:
                await verify_equal(src, dst, t, progress)
        result.verified = True
    return result


async def _copy_table(src: CoreManager, dst: CoreManager, t: TableCopy, after: Key | None, *,
                      batch_size: int, merge: bool, hasher: Hasher | None,
                      progress: ProgressCallback | None, batches: _Batches) -> None:
    """Copy one table's rows after ``after``, batch by batch, hashing them if asked."""
    columns = COLUMNS[t.table]
    convert = converter(dst, t.table)
    created = columns.index("created_at")
    done = 0 if merge else t.existing_rows
    if progress:
        progress("copy", t.table, done, t.source_rows)
    pending = asyncio.ensure_future(read_records(src, t.table, after, batch_size))
    # One write in flight at a time (batches land in order, so the destination always holds a
    # prefix); the next batch is read, converted and hashed while it runs.
    writing: asyncio.Future[None] | None = None
    in_flight, first_id = 0, None
    params: list[list[Any]] = []
    try:
        while True:
            records = await pending
            if records:
                after = (records[-1][created], records[-1][0])
                pending = asyncio.ensure_future(read_records(src, t.table, after, batch_size))
                params = [convert(r) for r in records]
                if hasher is not None:
                    hash_records(hasher, records, columns)
            if writing is not None:
                try:
                    await writing
                except OrchestratorDBError as exc:
                    raise CopyError(
                        f"could not write a batch of {t.table} (first row {first_id}): {exc}",
                        table=t.table,
                    ) from exc
                writing = None
                t.copied_rows += in_flight
                done += in_flight
                if progress:
                    progress("copy", t.table, done, max(t.source_rows, done))
                batches.written()
            if not records:
                break
            writing = asyncio.ensure_future(write(dst, t.table, params, merge=merge))
            in_flight, first_id = len(records), records[0][0]
    finally:
        for future in (pending, writing):
            if future is not None and not future.done():
                future.cancel()
        # Reap them so an error (or the cancellation) is not reported as never retrieved.
        await asyncio.gather(*(f for f in (pending, writing) if f is not None),
                             return_exceptions=True)


__all__ = ["COPY_TABLES", "DEFAULT_BATCH_SIZE", "Source", "copy_database"]
