"""The copy itself: open both sides, plan (new, resume or merge), copy table by table, verify."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from ..config import parse_url
from ..errors import OrchestratorDBError
from ..manager import CoreManager
from ..store.digest import InvalidJsonError, RowDigest
from ..tables import COLUMNS, OTLP_SPANS_TABLE, ROLLUP_TABLE, TABLES
from .errors import CopyError, CopyInterrupted
from .results import CopyResult, Mode, ProgressCallback, TableCopy
from .rollups import Rollups, plan_rollups, verify_rollups, write_missing
from .rows import (
    Key,
    converter,
    count,
    count_if_present,
    has_table,
    invalid_json,
    is_prefix,
    last_key,
    record_batches,
    write,
)
from .spans import copy_spans, verify_spans
from .verify import verify_digest, verify_merge

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
                # The destination may be one an earlier copy left unfinished: this one ends it.
                accept = db.accept_interrupted_load
                db.accept_interrupted_load = accept or db is dst
                try:
                    await db.connect()
                finally:
                    db.accept_interrupted_load = accept
                opened.append(db)
        return await _copy(src, dst, batch_size=batch_size, merge=merge, verify=verify,
                           progress=progress, stop_after_batches=stop_after_batches)
    finally:
        for db in opened:
            await db.close()


@dataclass
class _Plan:
    """What this run has to do: per table, where the copy starts; the rollups and the spans,
    if both sides have them."""

    tables: list[TableCopy]
    starts: dict[str, Key | None]
    rollups: Rollups | None
    spans: TableCopy | None


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
                foreign.append(f"{t.table}: {_rows(t.existing_rows)}")
    rollups: Rollups | None = None
    if await has_table(src, ROLLUP_TABLE) and await has_table(dst, ROLLUP_TABLE):
        rollups = await plan_rollups(src, dst, merge=merge)
        rt = TableCopy(ROLLUP_TABLE, source_rows=len(rollups.source),
                       existing_rows=len(rollups.source) - len(rollups.missing) + rollups.extra)
        tables.append(rt)
        if rollups.extra and not merge:
            foreign.append(f"{ROLLUP_TABLE}: {_rows(rollups.extra)}")
    spans: TableCopy | None = None
    span_rows = await count_if_present(src, OTLP_SPANS_TABLE)
    existing_spans = await count_if_present(dst, OTLP_SPANS_TABLE)
    if span_rows is not None and existing_spans is not None:
        # Its rows reference agents: any the destination holds came with agents checked above.
        spans = TableCopy(OTLP_SPANS_TABLE, source_rows=span_rows, existing_rows=existing_spans)
        tables.append(spans)
    if foreign:
        raise CopyError(
            f"the destination already holds data that is not an interrupted copy of this source "
            f"(in {', '.join(foreign)}); pass merge=True to add the source's rows to it",
            field="merge",
        )
    return _Plan(tables, starts, rollups, spans)


def _rows(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'}"


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
    records = [t for t in tables if t.table in COPY_TABLES]
    batches = _Batches(stop_after_batches)
    if merge:
        # Rows merged into a live database are news to its followers: written the normal way,
        # triggers on. Anything a killed copy left deferred is restored first.
        await _restore(dst)
        for t in records:
            await _merge_table(src, dst, t, batch_size=batch_size, progress=progress,
                               batches=batches)
            t.copied_rows = await count(dst, t.table) - t.existing_rows
        await _copy_rollups(dst, tables, plan.rollups, progress)
        if verify:
            await _verify(src, dst, tables, plan.rollups, None, merge=True, progress=progress)
        await _copy_spans(src, dst, plan.spans, batch_size=batch_size, merge=True,
                          verify=verify, progress=progress, batches=batches)
        result.verified = verify
        return result

    # The source is hashed (on SQLite in a process of its own, on PostgreSQL by the server)
    # while its rows are copied.
    wanted = {t.table: COLUMNS[t.table] for t in records}
    source = asyncio.ensure_future(src.store.table_digests(wanted)) if verify else None
    try:
        # Positions go on from the source's before any row goes in, so a copy that does not end
        # (killed; `upgrade` ends it) leaves them going on too.
        await _continue_change_log(src, dst)
        await dst.store.begin_bulk_load(
            [t.table for t in records if t.source_rows > t.existing_rows])
        try:
            for t in records:
                await _load_table(src, dst, t, plan.starts[t.table], batch_size=batch_size,
                                  progress=progress, batches=batches)
        except Exception:
            # Leave the destination usable (indexes and triggers back) when the copy stops
            # here; should even that fail, the next copy restores them.
            with contextlib.suppress(OrchestratorDBError):
                await _restore(dst)
            raise
        await _copy_rollups(dst, tables, plan.rollups, progress)
        # The indexes are rebuilt while both sides' digests are compared.
        await _together(_restore(dst), _verify(
            src, dst, tables, plan.rollups, source, merge=False, progress=progress)
            if source is not None else _nothing())
    finally:
        if source is not None:  # ended, or no longer wanted (its error, if any, is seen)
            source.cancel()
            await asyncio.gather(source, return_exceptions=True)
    await _copy_spans(src, dst, plan.spans, batch_size=batch_size, merge=False, verify=verify,
                      progress=progress, batches=batches)
    await _continue_change_log(src, dst)
    result.verified = verify
    return result


async def _copy_rollups(dst: CoreManager, tables: list[TableCopy], rollups: Rollups | None,
                        progress: ProgressCallback | None) -> None:
    if rollups is not None and rollups.missing:
        await write_missing(dst, rollups)
        [t] = [t for t in tables if t.table == ROLLUP_TABLE]
        t.copied_rows = len(rollups.missing)
        if progress:
            progress("copy", ROLLUP_TABLE, len(rollups.source), len(rollups.source))


async def _verify(src: CoreManager, dst: CoreManager, tables: list[TableCopy],
                  rollups: Rollups | None, source: Awaitable[dict[str, RowDigest]] | None, *,
                  merge: bool, progress: ProgressCallback | None) -> None:
    """Check every table; raise ``VerificationError`` (or ``CopyError``) at the first problem."""
    records = [t for t in tables if t.table in COPY_TABLES]
    if source is not None:
        try:
            target = await dst.store.table_digests({t.table: COLUMNS[t.table] for t in records})
            digests = await source
        except InvalidJsonError as exc:
            raise CopyError(f"{exc}; fix or delete it, then run the copy again",
                            table=exc.table) from exc
    for t in tables:
        if t.table == OTLP_SPANS_TABLE:
            continue  # after its copy (_copy_spans)
        if t.table == ROLLUP_TABLE:
            assert rollups is not None
            await verify_rollups(dst, t, rollups, merge=merge)
        elif merge:
            await verify_merge(src, dst, t, progress)
        else:
            await verify_digest(src, dst, t, digests[t.table], target[t.table], progress)


async def _restore(dst: CoreManager) -> None:
    """Restore what the bulk load took from the destination (``Store.end_bulk_load``)."""
    try:
        await dst.store.end_bulk_load()
    except OrchestratorDBError as exc:
        raise CopyError(
            f"could not restore the destination's indexes, foreign keys and change-feed "
            f"triggers after a copy's bulk load: {exc}; fix that, then run the copy again"
        ) from exc


async def _copy_spans(src: CoreManager, dst: CoreManager, spans: TableCopy | None, *,
                      batch_size: int, merge: bool, verify: bool,
                      progress: ProgressCallback | None, batches: _Batches) -> None:
    """Copy ``otlp_spans`` (``spans.py``) once the agents they reference are in; verify it."""
    if spans is None:
        return
    await copy_spans(src, dst, spans, batch_size=batch_size, progress=progress,
                     written=batches.written)
    if verify:
        await verify_spans(src, dst, spans, merge=merge, progress=progress)


async def _nothing() -> None:
    return None


async def _together(*jobs: Awaitable[None]) -> None:
    """Run the jobs concurrently; once all have ended, raise the first error, if any."""
    for outcome in await asyncio.gather(*jobs, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


async def _continue_change_log(src: CoreManager, dst: CoreManager) -> None:
    """The copied rows get no change rows (they are history, not news); positions go on.

    The destination's change log is made to reach the source's newest position (by a copy of
    that one change row), so new changes are numbered after it and a follower can move from
    the source to the destination keeping its position, missing nothing written after the copy.
    """
    head = await src.store.change_log_head()
    if head is not None:
        await dst.store.continue_change_log(head)


async def _load_table(src: CoreManager, dst: CoreManager, t: TableCopy, after: Key | None, *,
                      batch_size: int, progress: ProgressCallback | None,
                      batches: _Batches) -> None:
    """Copy one table's rows after ``after`` with the destination store's bulk load."""
    done = t.existing_rows
    if progress:
        progress("copy", t.table, done, t.source_rows)

    def committed(n: int) -> None:
        nonlocal done
        t.copied_rows += n
        done += n
        if progress:
            progress("copy", t.table, done, max(t.source_rows, done))
        batches.written()

    recent: deque[list[list[Any]]] = deque(maxlen=2)  # the batches that may be in flight
    rows = record_batches(src, t.table, after, batch_size, recent=recent)
    try:
        await dst.store.load_batches(t.table, COLUMNS[t.table], rows, committed)
    except CopyError:
        raise
    except OrchestratorDBError as exc:
        raise invalid_json(t.table, recent) or CopyError(
            f"could not write a batch of {t.table}: {exc}", table=t.table) from exc
    finally:
        await rows.aclose()


async def _merge_table(src: CoreManager, dst: CoreManager, t: TableCopy, *, batch_size: int,
                       progress: ProgressCallback | None, batches: _Batches) -> None:
    """Add the rows whose ids the destination lacks, batch by batch (one write in flight)."""
    if progress:
        progress("copy", t.table, 0, t.source_rows)
    rows = record_batches(src, t.table, None, batch_size, convert=converter(dst, t.table))
    done = 0
    try:
        async for params in rows:
            try:
                await write(dst, t.table, params, merge=True)
            except OrchestratorDBError as exc:
                raise CopyError(f"could not write a batch of {t.table} (first row "
                                f"{params[0][0]}): {exc}", table=t.table) from exc
            done += len(params)
            if progress:
                progress("copy", t.table, done, max(t.source_rows, done))
            batches.written()
    finally:
        await rows.aclose()


__all__ = ["COPY_TABLES", "DEFAULT_BATCH_SIZE", "Source", "copy_database"]
