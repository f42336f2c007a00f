"""The ingest queue: decode off the event loop, write in batches, push back when full.

``export()`` decodes a request body on a worker thread (protobuf parsing and attribute
conversion would otherwise hold the event loop), queues the spans or log records, and returns
only once the batch that holds them has been committed: an acknowledgement means the records are
in the database. One writer task takes everything queued (up to ``max_batch``) and writes it in
one transaction, so four exporters sending at once cost one commit, not four.

When more than ``max_pending`` items wait, or ``MAX_DECODING`` requests are being decoded,
``export()`` raises ``Busy`` at once, saying which (HTTP 429 with
Retry-After; OTLP exporters retry with backoff) instead of buying memory. ``stop()`` refuses new
requests (``Unavailable``, 503), then writes what is queued before it returns, so nothing that
was, or is about to be, acknowledged is lost on a clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import ConstraintError, OrchestratorDBError, UnavailableError
from ..manager import CoreManager
from .logs import Record, ingest_records, records
from .protocol import Signal, body_encoding, decompress, parse
from .spans import SpanView, views
from .storage import Storage
from .traces import Outcome, Staged, ingest_spans, stage_spans, write_staged

logger = logging.getLogger("orchestrator_db.otlp")

DEFAULT_MAX_PENDING = 50_000
DEFAULT_MAX_BATCH = 5_000
# How long stop() lets the writer finish what is queued before it gives up on it.
STOP_TIMEOUT = 60.0
# Requests decoded at once at most: each may hold its whole body (up to 64 MiB un-gzipped).
MAX_DECODING = 8


class Busy(OrchestratorDBError):
    """The ingest queue is full: retry after ``retry_after`` seconds."""

    retry_after = 1


class Unavailable(OrchestratorDBError):
    """The receiver is stopping, or the database failed: retry after ``retry_after`` seconds."""

    retry_after = 5


@dataclass
class Result:
    """What an export request came to."""

    received: int
    rejected: int
    message: str


@dataclass
class _Job:
    signal: Signal
    items: list[Any]
    future: asyncio.Future[Outcome]
    alone: bool = False  # written in a batch of its own (a merged batch with it failed)


@dataclass
class Stats:
    """Counters of a receiver, for health reports."""

    requests: int = 0
    items: int = 0
    rejected: int = 0
    batches: int = 0
    busy: int = 0
    failures: int = 0
    last_error: str | None = None
    write_seconds: float = 0.0


def decode(signal: Signal, body: bytes, content_type: str | None,
           content_encoding: str | None) -> tuple[list[Any], int, str]:
    """Decode a request body into spans or log records (rejected count and reason for spans)."""
    encoding = body_encoding(content_type)
    message = parse(signal, decompress(body, content_encoding), encoding)
    if signal == "traces":
        spans, rejected, reason = views(message)
        return spans, rejected, reason
    return records(message), 0, ""


class OtlpReceiver:
    """Takes OTLP export requests and writes them to one database in batches.

    Args:
        db: a connected manager.
        max_pending: items (spans or log records) allowed to wait before ``Busy``.
        max_batch: items written in one transaction at most.
    """

    def __init__(self, db: CoreManager, *, max_pending: int = DEFAULT_MAX_PENDING,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.storage = Storage(db)
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.stats = Stats()
        self._jobs: deque[_Job] = deque()
        self._pending = 0
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self._decoding = 0
        # Decoding has threads of its own: slow bodies must not take the loop's default pool,
        # which the writer (planning spans, mapping records) and the SQLite store share.
        self._decoder: ThreadPoolExecutor | None = None

    # lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the writer task."""
        if self._worker is None:
            self._closing = False
            self._decoder = self._decoder or ThreadPoolExecutor(
                MAX_DECODING, thread_name_prefix="otlp-decode")
            self._worker = asyncio.get_running_loop().create_task(self._run(),
                                                                  name="otlp-writer")

    async def stop(self) -> None:
        """Refuse new requests, write everything queued, then stop the writer."""
        self._closing = True
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._wake.set()
        try:  # the writer returns once everything queued is written
            await asyncio.wait_for(asyncio.shield(worker), STOP_TIMEOUT)
        except TimeoutError:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for job in self._jobs:  # never written: never acknowledged
            if not job.future.done():
                job.future.set_exception(Unavailable("the OTLP receiver stopped"))
        self._jobs.clear()
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            decoder.shutdown(wait=False)  # a request being decoded ends with a 503

    @property
    def pending(self) -> int:
        """Items queued and not yet written."""
        return self._pending

    def status(self) -> dict[str, Any]:
        """The receiver's counters and queue, for /healthz-like reports."""
        s = self.stats
        return {"running": self._worker is not None and not self._worker.done(),
                "pending": self._pending, "requests": s.requests, "items": s.items,
                "rejected": s.rejected, "batches": s.batches, "busy": s.busy,
                "failures": s.failures, "last_error": s.last_error}

    # requests ----------------------------------------------------------------------------------
    async def export(self, signal: Signal, body: bytes, content_type: str | None,
                     content_encoding: str | None) -> Result:
        """Decode, queue and write one export request; return once it is committed.

        Raises:
            UnsupportedMediaType, BadRequest: the body cannot be read (415, 400).
            Busy: too much is waiting (429).
            Unavailable: the receiver is stopping or the database failed (503).
        """
        self._check_open()
        if self._pending >= self.max_pending:
            self.stats.busy += 1
            raise Busy(f"{self._pending} items are waiting to be written; retry shortly")
        if self._decoding >= MAX_DECODING:
            self.stats.busy += 1
            raise Busy(f"{MAX_DECODING} export requests are being decoded already (the most "
                       "at once); retry shortly")
        body_encoding(content_type)  # 415 before any work
        self._decoding += 1
        try:
            items, rejected, reason = await asyncio.get_running_loop().run_in_executor(
                self._decoder, decode, signal, body, content_type, content_encoding)
        finally:
            self._decoding -= 1
        self._check_open()
        self.stats.requests += 1
        if not items:
            return Result(rejected, rejected, reason)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(signal, items, future))
        self._pending += len(items)
        self._wake.set()
        try:
            outcome = await asyncio.shield(future)
        except OrchestratorDBError as exc:
            raise Unavailable(f"the records could not be written: {exc}") from exc
        refused = sum(1 for item in items if _key(item) in outcome.refused)
        self.stats.rejected += rejected + refused
        return Result(len(items) + rejected, rejected + refused,
                      outcome.message if refused else reason)

    def _check_open(self) -> None:
        if self._closing or self._worker is None or self._worker.done():
            raise Unavailable("the OTLP receiver is not running (the server is stopping)")

    # the writer --------------------------------------------------------------------------------
    async def _run(self) -> None:
        """Write batches until stopped; stage the next batch of spans while one is written.

        Planning and validating a batch is Python work; writing it is mostly the database's
        (SQLite's C code without the GIL, or the PostgreSQL server). So batch N+1 is staged
        against batch N (``overlay``) while N is written. N+1 is written only after N has
        committed, and staged again without the overlay if N failed.
        """
        inflight: _Inflight | None = None
        while True:
            if not self._jobs:
                if inflight is not None:
                    await self._settle(inflight)
                    inflight = None
                    continue
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._take()
            items = [item for job in batch for item in job.items]
            if batch[0].signal == "logs":
                if inflight is not None:  # logs find the spans written before them
                    await self._settle(inflight)
                    inflight = None
                await self._finish(batch, self._logs(items))
                continue
            overlay = inflight.staged if inflight is not None else None
            staged: Staged | BaseException
            try:
                staged = await stage_spans(self.storage, items, overlay)
            except Exception as exc:  # noqa: BLE001 - settled below, as a failed batch
                staged = exc
            if inflight is not None:
                ok = await self._settle(inflight)
                inflight = None
                if not ok or isinstance(staged, ConstraintError):
                    staged = await self._restage(items)
            if isinstance(staged, BaseException):
                self._fail(batch, staged)
                continue
            task = asyncio.get_running_loop().create_task(
                write_staged(self.storage, staged))
            inflight = _Inflight(batch, items, staged, task, time.perf_counter())

    async def _restage(self, items: list[Any]) -> Staged | BaseException:
        try:
            return await stage_spans(self.storage, items)
        except Exception as exc:  # noqa: BLE001 - reported to the batch's callers
            return exc

    async def _logs(self, items: list[Any]) -> Outcome:
        return await ingest_records(self.storage, items)

    async def _settle(self, inflight: _Inflight) -> bool:
        """Wait for a batch's write; resume its callers; return whether it was stored."""
        try:
            await inflight.task
        except ConstraintError:
            # Another process wrote some of these spans meanwhile: stage and write again.
            await self._finish(inflight.batch, ingest_spans(self.storage, inflight.items),
                               inflight.started)
            return not any(job.future.exception() for job in inflight.batch
                           if job.future.done() and not job.future.cancelled())
        except asyncio.CancelledError:
            self._fail(inflight.batch, Unavailable("the OTLP receiver stopped"))
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the batch's callers
            self._fail(inflight.batch, exc, inflight.started)
            return False
        self._done(inflight.batch, inflight.staged.outcome, inflight.started)
        return True

    async def _finish(self, batch: list[_Job], work: Awaitable[Outcome],
                      started: float | None = None) -> None:
        """Run a batch's work to the end and resume its callers with the outcome."""
        started = time.perf_counter() if started is None else started
        try:
            outcome = await work
        except asyncio.CancelledError:
            self._fail(batch, Unavailable("the OTLP receiver stopped"))
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the batch's callers
            self._fail(batch, exc, started)
        else:
            self._done(batch, outcome, started)

    def _done(self, batch: list[_Job], outcome: Outcome, started: float) -> None:
        self.stats.batches += 1
        self.stats.items += sum(len(job.items) for job in batch)
        self._release(batch, started)
        for job in batch:
            if not job.future.done():
                job.future.set_result(outcome)

    def _fail(self, batch: list[_Job], exc: BaseException, started: float | None = None) -> None:
        """Resume a batch's callers with its failure (503 for them); the writer goes on.

        A batch merged from several requests that failed for a reason other than the database
        or the receiver being unavailable is written again one request at a time, so one
        request that cannot be written fails alone, not its neighbours (whose exporters would
        send them again, beside it again).
        """
        if len(batch) > 1 and not isinstance(exc, (Unavailable, UnavailableError)):
            if started is not None:
                self.stats.write_seconds += time.perf_counter() - started
            for job in reversed(batch):
                job.alone = True
                self._jobs.appendleft(job)
            self._wake.set()
            return
        if not isinstance(exc, Unavailable):
            self.stats.failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            if self.stats.failures == 1 or not isinstance(exc, OrchestratorDBError):
                logger.error("OTLP batch of %d items not written",
                             sum(len(job.items) for job in batch), exc_info=exc)
        error = exc if isinstance(exc, OrchestratorDBError) else OrchestratorDBError(
            f"{type(exc).__name__}: {exc}")
        self._release(batch, started)
        for job in batch:
            if not job.future.done():
                job.future.set_exception(error)

    def _release(self, batch: list[_Job], started: float | None) -> None:
        if started is not None:
            self.stats.write_seconds += time.perf_counter() - started
        self._pending -= sum(len(job.items) for job in batch)

    def _take(self) -> list[_Job]:
        """The queued jobs of the first job's signal, up to ``max_batch`` items."""
        first = self._jobs.popleft()
        batch, count = [first], len(first.items)
        while not first.alone and self._jobs and self._jobs[0].signal == first.signal \
                and not self._jobs[0].alone and count + len(self._jobs[0].items) <= self.max_batch:
            job = self._jobs.popleft()
            batch.append(job)
            count += len(job.items)
        return batch


@dataclass
class _Inflight:
    """A batch of spans being written, with what it was staged as."""

    batch: list[_Job]
    items: list[Any]
    staged: Staged
    task: asyncio.Task[None]
    started: float


def _key(item: SpanView | Record) -> str:
    return item.trace_id if isinstance(item, SpanView) else item.key


__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_MAX_PENDING", "Busy", "OtlpReceiver", "Result",
           "Unavailable", "decode"]
