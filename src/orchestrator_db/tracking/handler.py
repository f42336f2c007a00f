"""OrchestratorDBHandler: stdlib logging into agent_logs / system_logs, fast (design §5).

``emit`` only appends to a bounded in-memory queue; one writer thread, with its own event loop
and its own ``CoreManager`` on the same database, drains the queue in batches (one transaction
per batch, not one commit per record).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import multiprocessing.util
import os
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..errors import (
    ForeignKeyError,
)
from ..ids import uuid7
from ..manager import CoreManager
from ..models import MAX_MESSAGE_CHARS, MAX_SHORT_CHARS, clean_text
from .records import (
    canonical_uuid,
    clean_json,
    created_at_of,
    is_transient,
    json_safe,
    level_name,
    record_message,
    stored_details,
)
from .runs import current_agent_id, exception_details


class ManagerFacade(Protocol):
    """A wrapper around a manager, as ``SyncDatabaseManager``: the handler uses its database."""

    @property
    def manager(self) -> CoreManager: ...


# the logging handler -----------------------------------------------------------------------------
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}
_ROUTING_EXTRAS = frozenset({"agent_id", "log_type"})
RETRIES = 4  # tries after the first, for a transient error
RETRY_DELAY = 0.05  # seconds before the first retry; doubles each time


@dataclass(slots=True)
class _Entry:
    agent_id: str | None
    level: str
    log_type: str
    source: str
    message: str
    details: Any
    created_at: float  # LogRecord.created


class OrchestratorDBHandler(logging.Handler):
    """Write stdlib log records to agent_logs / system_logs, in batches, off the caller's path.

    A record goes to ``agent_logs`` when it names an agent (``extra={"agent_id": ...}``, or the
    code runs inside ``track_agent``), else to ``system_logs`` with the logger's name as source.
    ``emit`` formats the record and appends it to a bounded queue; it never waits for the
    database. One writer thread (its own event loop and ``CoreManager`` on the same
    database) inserts the queued records in batches of ``batch_size`` or every
    ``flush_interval_ms``, whichever comes first. ``flush()`` and ``close()`` return once all
    records queued before the call are written. When the queue is full a record is refused and
    counted in ``dropped`` (reported once on stderr and, at close, as a WARNING system log).

    Args:
        target: a database URL or path, or a (Sync)DatabaseManager whose database to use.
        batch_size: records per insert (one transaction each).
        flush_interval_ms: the longest a record waits in the queue when traffic is low.
        queue_size: records held in memory at most; beyond that, records are dropped.
        level: the handler's level.
    """

    def __init__(self, target: str | CoreManager | ManagerFacade | None = None, *,
                 batch_size: int = 500, flush_interval_ms: float = 100.0,
                 queue_size: int = 100_000, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        if batch_size < 1 or queue_size < 1 or flush_interval_ms < 0:
            raise ValueError("batch_size and queue_size must be ≥ 1, flush_interval_ms ≥ 0")
        self.batch_size = batch_size
        self.flush_interval = flush_interval_ms / 1000
        self.queue_size = queue_size
        self.dropped = 0
        self.failed = 0
        self.written = 0
        self.retried = 0  # inserts tried again after a transient error
        self.restarts = 0  # writer threads started again after one died
        self.last_error: str | None = None
        self._reported: set[str] = set()
        self._url = self._resolve_url(target)
        self._queue: collections.deque[_Entry] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._accepted = 0
        self._done = 0  # records taken off the queue and written (or failed)
        self._flush_asked = False
        self._closing = False
        self._closed = False
        self._warned_drop = False
        self._warned_closed = False
        self._startup_error: BaseException | None = None
        self._constructing = True  # the first writer's connection error is the constructor's
        self._forked = False  # in a forked child, until its own writer starts
        self._thread = self._start_writer()
        self._constructing = False
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        _LIVE.add(self)
        # A multiprocessing child leaves through os._exit, past logging's atexit flush: its
        # records are written when its process ends (multiprocessing's finalizers).
        multiprocessing.util.register_after_fork(self, _close_at_child_exit)

    def _start_writer(self) -> threading.Thread:
        started = threading.Event()
        thread = threading.Thread(target=self._writer, args=(started,),
                                  name="orchestrator-db-log-writer", daemon=True)
        thread.start()
        if self._constructing:
            started.wait()  # the first connection's error is the constructor's
        return thread

    def _ensure_writer(self) -> None:
        """Start a new writer if the last one died (never expected; reported, not hidden)."""
        with self._cond:
            if self._thread.is_alive() or self._closing or self._startup_error is not None:
                return
            if self._forked:  # a forked child's first record: its own writer, nothing lost
                self._forked = False
                self._thread = self._start_writer()
                return
            # The batch the dead writer had taken off the queue is lost with it: count it as
            # failed, so written + failed still adds up and flush() does not wait for it.
            lost = self._accepted - len(self._queue) - self._done
            self.failed += lost
            self._done += lost
            self.restarts += 1
            self._thread = self._start_writer()
        self._report(f"writer thread died and was restarted ({lost} record(s) lost with it)")

    @property
    def healthy(self) -> bool:
        """Whether the writer is running and its last batch was written (False after close)."""
        return (not self._closed and self._thread.is_alive() and self.last_error is None)

    @staticmethod
    def _resolve_url(target: Any) -> str | None:
        if target is None or isinstance(target, str):
            return target
        # Duck-typed, so the handler needs neither database.py nor sync.py (both above it).
        manager = getattr(target, "manager", target)  # a SyncDatabaseManager wraps one
        return str(manager.target.url)

    # the caller's side ---------------------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = self._entry(record)
        except Exception as exc:  # noqa: BLE001 - counted and reported, never lost silently
            with self._cond:
                self.failed += 1
            self._report(f"could not read a log record ({exc!r})")
            return
        if not self._thread.is_alive():
            self._ensure_writer()
        with self._cond:
            if self._closing:  # logged after close(): counted, and said once
                self.dropped += 1
                first = not self._warned_closed
                self._warned_closed = True
                what = "records logged after close() are dropped"
            elif len(self._queue) >= self.queue_size:
                self.dropped += 1
                first = not self._warned_drop
                self._warned_drop = True
                what = f"queue is full ({self.queue_size} records); dropping log records"
            else:
                self._queue.append(entry)
                self._accepted += 1
                if len(self._queue) == 1 or len(self._queue) >= self.batch_size:
                    self._cond.notify_all()
                return
        if first:
            sys.stderr.write(
                f"orchestrator-db: OrchestratorDBHandler {what} (counted in handler.dropped)\n")

    def _entry(self, record: logging.LogRecord) -> _Entry:
        attrs = record.__dict__
        agent_id = attrs.get("agent_id")
        if agent_id is None:
            agent_id = current_agent_id.get()
        details: dict[str, Any] = {}
        extra = attrs.keys() - _RECORD_ATTRS  # what came from ``extra=``
        if extra:
            for key in extra - _ROUTING_EXTRAS:
                details[key] = json_safe(attrs[key])
        if record.exc_info and record.exc_info[1] is not None:
            details["exception"] = exception_details(record.exc_info[1])
        elif record.exc_text:
            details["exception"] = {"traceback": record.exc_text}
        if record.stack_info:
            details["stack"] = record.stack_info
        if agent_id is not None:
            details["logger"] = record.name
        log_type = attrs.get("log_type")
        return _Entry(
            agent_id=None if agent_id is None else clean_text(str(agent_id), MAX_SHORT_CHARS),
            level=level_name(record.levelno),
            log_type=clean_text(str(log_type), MAX_SHORT_CHARS) if log_type is not None
            else "log",
            source=clean_text(str(record.name), MAX_SHORT_CHARS),
            message=clean_text(record_message(record), MAX_MESSAGE_CHARS),
            details=clean_json(details) or None,
            created_at=record.created,
        )

    def flush(self) -> None:
        """Return once every record queued before this call is written (or failed)."""
        if threading.current_thread() is self._thread:
            return  # a record logged by the writer itself: waiting would wait for ourselves
        with self._cond:
            target = self._accepted
            self._flush_asked = True
            self._cond.notify_all()
            while self._done < target and not self._closed:
                if not self._thread.is_alive():
                    break
                self._cond.wait(0.5)
        if self._done < target and not self._thread.is_alive() and not self._closed:
            self._ensure_writer()
            self.flush()

    def close(self) -> None:
        """Write everything queued, stop the writer and release its database connection."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._closing = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()
        super().close()

    def _after_fork(self) -> None:
        """In a forked child: start from an empty queue (the parent writes what it had queued)
        and counters of this process's own; its writer starts with its first record."""
        self._cond = threading.Condition(threading.Lock())  # the parent's may have been held
        self._queue = collections.deque()
        self._accepted = self._done = 0
        self.dropped = self.failed = self.written = self.retried = self.restarts = 0
        self.last_error = None
        self._reported = set()
        self._flush_asked = False
        self._warned_drop = False
        self._forked = True

    # the writer's side ---------------------------------------------------------------------------
    def _writer(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        db: CoreManager | None = None
        try:
            try:
                db = loop.run_until_complete(self._connect())
            except BaseException as exc:
                if self._constructing:  # the first writer: handed to the constructor
                    self._startup_error = exc
                    return
                self._report(f"the restarted log writer could not connect ({exc!r})")
            finally:
                started.set()
            for batch in self._batches():
                db = self._write_batch(loop, db, batch)
                with self._cond:
                    self._done += len(batch)
                    self._cond.notify_all()
            if self.dropped and db is not None:
                with _quiet("could not record dropped log records"):
                    loop.run_until_complete(db.create_system_log(
                        f"OrchestratorDBHandler dropped {self.dropped} log record(s): its "
                        f"queue ({self.queue_size} records) was full",
                        log_level="WARNING", source="orchestrator_db.tracking",
                        details={"dropped": self.dropped, "queue_size": self.queue_size},
                    ))
        finally:
            try:
                if db is not None:
                    with _quiet("could not close its database connection cleanly"):
                        loop.run_until_complete(db.close())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                with self._cond:
                    if self._closed or self._startup_error is not None:
                        self._closing = True
                    self._cond.notify_all()

    async def _connect(self) -> CoreManager:
        db = CoreManager(url=self._url) if self._url else CoreManager()
        return await db.connect()

    def _write_batch(self, loop: asyncio.AbstractEventLoop, db: CoreManager | None,
                     batch: list[_Entry]) -> CoreManager | None:
        """Write one batch, whatever happens; return the manager to use for the next one.

        Every exception is caught here, counted and reported: the writer thread never dies of
        one batch. Transient errors (a lock held too long, a lost connection) are retried with
        backoff inside ``_write``; a connection that cannot be opened is tried again here.
        """
        written, failed = self.written, self.failed
        delay = RETRY_DELAY
        for attempt in range(RETRIES + 1):
            try:
                if db is None:
                    db = loop.run_until_complete(self._connect())
                loop.run_until_complete(self._write(db, batch))
                self.last_error = None
                return db
            except Exception as exc:  # noqa: BLE001 - counted and reported, the writer goes on
                if attempt < RETRIES and db is None and is_transient(exc):
                    time.sleep(delay)
                    delay *= 2
                    continue
                lost = len(batch) - (self.written - written) - (self.failed - failed)
                self.failed += max(lost, 0)
                self._report(f"could not write {max(lost, 0)} log record(s) ({exc!r})")
                return db
        return db

    async def _retrying(self, insert: Callable[[], Awaitable[Any]]) -> None:
        """Run one atomic insert, again after a transient error (with backoff)."""
        delay = RETRY_DELAY
        for attempt in range(RETRIES + 1):
            try:
                await insert()
                return
            except Exception as exc:
                if attempt == RETRIES or not is_transient(exc):
                    raise
                self.retried += 1
                await asyncio.sleep(delay)
                delay *= 2

    def _report(self, message: str) -> None:
        """Remember the last error and say it on stderr (once per kind of trouble)."""
        self.last_error = message
        if message.split(" (", 1)[0] not in self._reported:
            self._reported.add(message.split(" (", 1)[0])
            sys.stderr.write(f"orchestrator-db: OrchestratorDBHandler {message}; counting them "
                             "in handler.failed\n")

    def _batches(self) -> Iterator[list[_Entry]]:
        cond, queue = self._cond, self._queue
        while True:
            with cond:
                while not queue and not self._closing:
                    self._flush_asked = False
                    cond.wait()
                if not queue:
                    return  # closing, and everything is written
                deadline = time.monotonic() + self.flush_interval
                while (len(queue) < self.batch_size and not self._closing
                       and not self._flush_asked):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    cond.wait(remaining)
                n = min(len(queue), self.batch_size)
                batch = [queue.popleft() for _ in range(n)]
            yield batch

    async def _write(self, db: CoreManager, batch: list[_Entry]) -> None:
        # The handler builds rows that are valid by construction (known level, text cleaned and
        # details encoded by the same checks the payload models apply: clean_text, encode_json;
        # canonical agent UUIDs), so they go straight to the store's bulk path (executemany /
        # COPY, one transaction): validating them again through the payload models would cost
        # about as much as the insert. Should a batch still fail, it is retried row by row
        # through create_agent_logs / create_system_logs, which say what is wrong.
        agent_rows: list[dict[str, Any]] = []
        system_rows: list[dict[str, Any]] = []
        for e in batch:
            created_at = created_at_of(e.created_at)
            agent_id = canonical_uuid(e.agent_id) if e.agent_id is not None else None
            if agent_id is not None:
                agent_rows.append({"id": uuid7(), "agent_id": agent_id, "log_level": e.level,
                                   "log_type": e.log_type, "message": e.message,
                                   "details": e.details, "created_at": created_at})
            else:
                system_rows.append(self._system_row(e, created_at))
        if agent_rows:
            try:
                await self._bulk(db, "agent_logs", agent_rows)
            except ForeignKeyError:
                # Records naming an agent that does not exist are kept, as system logs.
                missing = set(await db.missing_agents({r["agent_id"] for r in agent_rows}))
                system_rows.extend(self._orphan_row(r) for r in agent_rows
                                   if r["agent_id"] in missing)
                await self._insert(db, db.create_agent_logs,
                                   [r for r in agent_rows if r["agent_id"] not in missing])
            except Exception:  # noqa: BLE001 - row by row: only the bad rows fail
                await self._insert(db, db.create_agent_logs, agent_rows)
        if system_rows:
            try:
                await self._bulk(db, "system_logs", system_rows)
            except Exception:  # noqa: BLE001 - row by row: only the bad rows fail
                await self._insert(db, db.create_system_logs, system_rows)

    async def _bulk(self, db: CoreManager, table: str, rows: list[dict[str, Any]]) -> None:
        encoded = [{**r, "details": stored_details(r["details"])} for r in rows]
        await self._retrying(lambda: db.insert_records(table, encoded))
        self.written += len(rows)

    async def _insert(self, db: CoreManager, insert: Callable[..., Any],
                      rows: list[dict[str, Any]]) -> None:
        """Insert rows through the validating API, one by one, counting the failures."""
        for row in rows:
            # The details as the bulk path stores them (encoded; "details_dropped" when they
            # cannot be), so a row is not refused here that the bulk path would have kept.
            row = {**{k: v for k, v in row.items() if k != "id"},
                   "details": stored_details(row["details"])}
            try:
                await self._retrying(functools.partial(insert, [row]))
                self.written += 1
            except Exception as exc:  # noqa: BLE001 - counted, reported once, the rest go on
                self.failed += 1
                self._report(f"could not write a log record ({exc!r})")

    @staticmethod
    def _system_row(e: _Entry, created_at: datetime) -> dict[str, Any]:
        details = e.details
        if e.agent_id is not None:  # an agent id that is not a UUID: keep it with the record
            details = {**(details or {}), "agent_id": e.agent_id}
        return {"id": uuid7(), "message": e.message, "log_level": e.level,
                "source": e.source, "details": details,
                "created_at": created_at}

    @staticmethod
    def _orphan_row(row: Mapping[str, Any]) -> dict[str, Any]:
        details = {**(row["details"] or {}), "agent_id": row["agent_id"],
                   "log_type": row["log_type"]}
        return {"id": uuid7(), "message": row["message"], "log_level": row["log_level"],
                "source": details.get("logger"), "details": details,
                "created_at": row["created_at"]}


# Handlers of this process, reset in a forked child: its copy of the queue holds the parent's
# records, which the parent writes itself (written twice, before).
_LIVE: weakref.WeakSet[OrchestratorDBHandler] = weakref.WeakSet()


def _forget_parent_records() -> None:
    for handler in list(_LIVE):
        handler._after_fork()


def _close_at_child_exit(handler: OrchestratorDBHandler) -> None:
    multiprocessing.util.Finalize(handler, handler.close, exitpriority=10)


os.register_at_fork(after_in_child=_forget_parent_records)


@contextmanager
def _quiet(what: str) -> Iterator[None]:
    """Say on stderr that the writer ``what`` (why, too) and go on: closing must not break."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - said on stderr, once: the writer is ending
        sys.stderr.write(f"orchestrator-db: OrchestratorDBHandler {what}: {exc!r}\n")
