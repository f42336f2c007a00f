"""Tracking agent runs and ingesting logs fast (design §5).

- ``db.track_agent(...)``: a context manager around one agent run (async, and a blocking twin on
  ``SyncDatabaseManager``), recording status, start/end, failures, logs and prompts.
- ``log_agent_event`` / ``log_system_event``: one-line helpers with the seeds' signature.
- ``OrchestratorDBHandler``: a ``logging.Handler`` whose ``emit`` only appends to a bounded
  in-memory queue; one writer thread, with its own event loop and its own ``DatabaseManager``,
  drains the queue in batches (one transaction per batch, not one commit per record).
"""

from __future__ import annotations

import collections
import contextvars
import json
import logging
import math
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import DuplicateError, ForeignKeyError, OrchestratorDBError
from .models import MAX_MESSAGE_CHARS, MAX_SHORT_CHARS, utc_now
from .store.base import uuid7

if TYPE_CHECKING:
    from .manager import CoreManager as DatabaseManager
    from .sync import SyncDatabaseManager

T = TypeVar("T")

# The agent whose run the current code is part of: set by track_agent, read by the handler.
current_agent_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "orchestrator_db_agent_id", default=None
)


def _exception_details(exc: BaseException) -> dict[str, Any]:
    return {"exception": {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }}


# track_agent -------------------------------------------------------------------------------------
class PromptHandle:
    """A prompt recorded by ``run.prompt(...)``; ``complete`` stores its response and cost."""

    def __init__(self, db: DatabaseManager, prompt_id: str) -> None:
        self._db = db
        self.prompt_id = prompt_id

    @property
    def id(self) -> str:
        """The prompt's id."""
        return self.prompt_id

    async def complete(self, response: str | None, *, tokens_input: int = 0,
                       tokens_output: int = 0, cost_usd: float = 0.0) -> bool:
        """Store the response, tokens and cost and mark the prompt completed."""
        return await self._db.complete_prompt(self.prompt_id, response,
                                              tokens_input=tokens_input,
                                              tokens_output=tokens_output, cost_usd=cost_usd)

    async def fail(self, response: str | None = None, *, tokens_input: int = 0,
                   tokens_output: int = 0, cost_usd: float = 0.0) -> bool:
        """Mark the prompt failed (tokens and cost spent on it still count)."""
        return await self._db.complete_prompt(self.prompt_id, response,
                                              tokens_input=tokens_input,
                                              tokens_output=tokens_output, cost_usd=cost_usd,
                                              status="failed")


class AgentRun:
    """One tracked agent run: ``async with db.track_agent(...) as run:``.

    Entering creates (or reuses by name) the orchestrator agent and creates the agent as
    ``executing`` with ``started_at``; leaving marks it ``completed``, or ``failed`` with the
    exception logged as an ERROR agent log (``cancelled`` for cancellation and interrupts), and
    re-raises. While inside, ``current_agent_id`` names the agent, so ``OrchestratorDBHandler``
    files stdlib log records of this code under it.
    """

    def __init__(self, db: DatabaseManager, orchestrator_agent: str, session_id: str | None,
                 *, model: str | None = None, name: str | None = None,
                 description: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._db = db
        self.orchestrator_agent = orchestrator_agent
        self.session_id = session_id if session_id is not None else str(uuid.uuid4())
        self.model = model
        self.name = name
        self.description = description
        self.metadata = metadata
        self.orchestrator_agent_id: str | None = None
        self._agent_id: str | None = None
        self._token: contextvars.Token[str | None] | None = None

    @property
    def agent_id(self) -> str:
        """The id of the agent this run created."""
        if self._agent_id is None:
            raise OrchestratorDBError("the run has not started; use it as a context manager")
        return self._agent_id

    async def _orchestrator_agent_id(self) -> str:
        db = self._db
        found = await db.get_orchestrator_agent_by_name(self.orchestrator_agent)
        if found is not None:
            return str(found["id"])
        try:
            return await db.create_orchestrator_agent(self.orchestrator_agent, self.description,
                                                      default_model=self.model)
        except DuplicateError:  # another process or task created it just now
            found = await db.get_orchestrator_agent_by_name(self.orchestrator_agent)
            if found is None:  # pragma: no cover - created and deleted in between
                raise
            return str(found["id"])

    async def _start(self) -> str:
        self.orchestrator_agent_id = await self._orchestrator_agent_id()
        self._agent_id = await self._db.create_agent(
            self.orchestrator_agent_id, self.session_id, status="executing", name=self.name,
            model=self.model, metadata=self.metadata, started_at=utc_now(),
        )
        return self._agent_id

    async def _finish(self, exc: BaseException | None) -> None:
        db = self._db
        agent_id = self.agent_id
        if exc is None:
            await db.update_agent_status(agent_id, "completed")
            return
        failed = isinstance(exc, Exception)
        try:
            async with db.transaction():
                await db.create_agent_log(
                    agent_id, f"{type(exc).__name__}: {exc}",
                    log_level="ERROR" if failed else "WARNING",
                    log_type="error" if failed else "cancelled",
                    details=_exception_details(exc),
                )
                await db.update_agent_status(agent_id, "failed" if failed else "cancelled")
        except Exception as record_exc:  # keep the caller's exception, say why it is unrecorded
            exc.add_note(f"orchestrator-db could not record this failure: {record_exc!r}")

    async def __aenter__(self) -> AgentRun:
        await self._start()
        self._token = current_agent_id.set(self._agent_id)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._token is not None:
            current_agent_id.reset(self._token)
            self._token = None
        await self._finish(exc)

    async def log(self, message: str, level: str = "INFO", *, log_type: str = "event",
                  details: Any = None) -> str:
        """Write an agent log line for this run and return its id."""
        return await self._db.create_agent_log(self.agent_id, message, log_level=level,
                                               log_type=log_type, details=details)

    async def prompt(self, content: str, *, model: str | None = None) -> PromptHandle:
        """Record a prompt sent by this run (model defaults to the run's)."""
        prompt_id = await self._db.create_prompt(self.agent_id, content,
                                                 model=model if model is not None else self.model)
        return PromptHandle(self._db, prompt_id)


class SyncPromptHandle:
    """The blocking form of :class:`PromptHandle`."""

    def __init__(self, run: Callable[[Coroutine[Any, Any, Any]], Any], handle: PromptHandle
                 ) -> None:
        self._run = run
        self._handle = handle
        self.prompt_id = handle.prompt_id

    @property
    def id(self) -> str:
        """The prompt's id."""
        return self.prompt_id

    def complete(self, response: str | None, **kwargs: Any) -> bool:
        """Store the response, tokens and cost and mark the prompt completed."""
        return bool(self._run(self._handle.complete(response, **kwargs)))

    def fail(self, response: str | None = None, **kwargs: Any) -> bool:
        """Mark the prompt failed."""
        return bool(self._run(self._handle.fail(response, **kwargs)))


class SyncAgentRun:
    """The blocking form of :class:`AgentRun`: ``with sync_db.track_agent(...) as run:``.

    The database work is the async run's, executed on the sync manager's loop; the context
    variable is set in the caller's own thread, where its log records are emitted.
    """

    def __init__(self, db: SyncDatabaseManager, run: AgentRun) -> None:
        self._sync = db
        self._async_run = run
        self._token: contextvars.Token[str | None] | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._sync._run(coro)

    @property
    def agent_id(self) -> str:
        """The id of the agent this run created."""
        return self._async_run.agent_id

    @property
    def session_id(self) -> str:
        """The session of this run."""
        return self._async_run.session_id

    @property
    def orchestrator_agent_id(self) -> str | None:
        """The orchestrator agent of this run."""
        return self._async_run.orchestrator_agent_id

    def __enter__(self) -> SyncAgentRun:
        agent_id = self._run(self._async_run._start())
        self._token = current_agent_id.set(agent_id)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._token is not None:
            current_agent_id.reset(self._token)
            self._token = None
        self._run(self._async_run._finish(exc))

    def log(self, message: str, level: str = "INFO", **kwargs: Any) -> str:
        """Write an agent log line for this run and return its id."""
        return self._run(self._async_run.log(message, level, **kwargs))

    def prompt(self, content: str, *, model: str | None = None) -> SyncPromptHandle:
        """Record a prompt sent by this run."""
        return SyncPromptHandle(self._run, self._run(self._async_run.prompt(content, model=model)))


# one-line helpers --------------------------------------------------------------------------------
async def log_agent_event(db: DatabaseManager, agent_id: str, log_type: str, message: str,
                          metadata: Any = None, *, level: str = "INFO") -> str:
    """Write one agent log line (the seeds' signature; ``metadata`` is stored as details)."""
    return await db.create_agent_log(agent_id, message, log_level=level, log_type=log_type,
                                     details=metadata)


async def log_system_event(db: DatabaseManager, message: str, *, level: str = "INFO",
                           source: str | None = None, details: Any = None) -> str:
    """Write one system log line and return its id."""
    return await db.create_system_log(message, log_level=level, source=source, details=details)


# the logging handler -----------------------------------------------------------------------------
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}
_ROUTING_EXTRAS = frozenset({"agent_id", "log_type"})


def _level_name(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return "CRITICAL"
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARNING"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG"


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    try:
        return json.loads(json.dumps(value, default=repr, allow_nan=False))
    except (TypeError, ValueError):
        return repr(value)


def _clean_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if len(text) > limit:
        text = text[: limit - 20] + "… [truncated]"
    return text


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
    database. One writer thread (its own event loop and ``DatabaseManager`` on the same
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

    def __init__(self, target: str | DatabaseManager | SyncDatabaseManager | None = None, *,
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
        self._url = self._resolve_url(target)
        self._queue: collections.deque[_Entry] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._accepted = 0
        self._done = 0  # records taken off the queue and written (or failed)
        self._flush_asked = False
        self._closing = False
        self._closed = False
        self._warned_drop = False
        self._warned_fail = False
        self._startup_error: BaseException | None = None
        started = threading.Event()
        self._thread = threading.Thread(target=self._writer, args=(started,),
                                        name="orchestrator-db-log-writer", daemon=True)
        self._thread.start()
        started.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error

    @staticmethod
    def _resolve_url(target: Any) -> str | None:
        if target is None or isinstance(target, str):
            return target
        manager = getattr(target, "manager", target)  # a SyncDatabaseManager wraps one
        return str(manager.target.url)

    # the caller's side ---------------------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = self._entry(record)
        except Exception:
            self.handleError(record)
            return
        with self._cond:
            if self._closing:
                return
            if len(self._queue) >= self.queue_size:
                self.dropped += 1
                first = not self._warned_drop
                self._warned_drop = True
            else:
                self._queue.append(entry)
                self._accepted += 1
                if len(self._queue) == 1 or len(self._queue) >= self.batch_size:
                    self._cond.notify_all()
                return
        if first:
            sys.stderr.write(
                f"orchestrator-db: OrchestratorDBHandler queue is full ({self.queue_size} "
                "records); dropping log records (counted in handler.dropped)\n"
            )

    def _entry(self, record: logging.LogRecord) -> _Entry:
        attrs = record.__dict__
        agent_id = attrs.get("agent_id")
        if agent_id is None:
            agent_id = current_agent_id.get()
        details: dict[str, Any] = {}
        extra = attrs.keys() - _RECORD_ATTRS  # what came from ``extra=``
        if extra:
            for key in extra - _ROUTING_EXTRAS:
                details[key] = _json_safe(attrs[key])
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            details["exception"] = {
                "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(exc)),
            }
        elif record.exc_text:
            details["exception"] = {"traceback": record.exc_text}
        if record.stack_info:
            details["stack"] = record.stack_info
        if agent_id is not None:
            details["logger"] = record.name
        log_type = attrs.get("log_type")
        return _Entry(
            agent_id=None if agent_id is None else str(agent_id),
            level=_level_name(record.levelno),
            log_type=_clean_text(str(log_type), MAX_SHORT_CHARS) if log_type is not None
            else "log",
            source=record.name,
            message=_clean_text(record.getMessage()),
            details=details or None,
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
            while self._done < target and self._thread.is_alive():
                self._cond.wait(0.5)

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

    # the writer's side ---------------------------------------------------------------------------
    def _writer(self, started: threading.Event) -> None:
        import asyncio

        from .manager import CoreManager as DatabaseManager

        loop = asyncio.new_event_loop()
        db = DatabaseManager(url=self._url) if self._url else DatabaseManager()
        try:
            try:
                loop.run_until_complete(db.connect())
            except BaseException as exc:  # handed to the constructor
                self._startup_error = exc
                return
            finally:
                started.set()
            for batch in self._batches():
                loop.run_until_complete(self._write(db, batch))
                with self._cond:
                    self._done += len(batch)
                    self._cond.notify_all()
            if self.dropped:
                with _quiet():
                    loop.run_until_complete(db.create_system_log(
                        f"OrchestratorDBHandler dropped {self.dropped} log record(s): its "
                        f"queue ({self.queue_size} records) was full",
                        log_level="WARNING", source="orchestrator_db.tracking",
                        details={"dropped": self.dropped, "queue_size": self.queue_size},
                    ))
        finally:
            try:
                loop.run_until_complete(db.close())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                with self._cond:
                    self._closing = True
                    self._cond.notify_all()

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

    async def _write(self, db: DatabaseManager, batch: list[_Entry]) -> None:
        # The handler builds rows that are valid by construction (known level, cleaned text,
        # JSON-safe details, canonical agent UUIDs), so they go straight to the store's bulk
        # path (executemany / COPY, one transaction): validating them again through the payload
        # models would cost about as much as the insert. Should a batch still fail, it is
        # retried through create_agent_logs / create_system_logs, which say what is wrong.
        agent_rows: list[dict[str, Any]] = []
        system_rows: list[dict[str, Any]] = []
        for e in batch:
            created_at = datetime.fromtimestamp(e.created_at, UTC)
            agent_id = _canonical_uuid(e.agent_id) if e.agent_id is not None else None
            if agent_id is not None:
                agent_rows.append({"id": uuid7(), "agent_id": agent_id, "log_level": e.level,
                                   "log_type": e.log_type, "message": e.message,
                                   "details": e.details, "created_at": created_at})
            else:
                system_rows.append(self._system_row(e, created_at))
        if agent_rows:
            try:
                await db.insert_records("agent_logs", agent_rows)
            except ForeignKeyError:
                # Records naming an agent that does not exist are kept, as system logs.
                missing = set(await db.missing_agents({r["agent_id"] for r in agent_rows}))
                system_rows.extend(self._orphan_row(r) for r in agent_rows
                                   if r["agent_id"] in missing)
                await self._insert(db, db.create_agent_logs,
                                   [r for r in agent_rows if r["agent_id"] not in missing])
            except OrchestratorDBError:
                await self._insert(db, db.create_agent_logs, agent_rows)
            else:
                self.written += len(agent_rows)
        if system_rows:
            try:
                await db.insert_records("system_logs", system_rows)
            except OrchestratorDBError:
                await self._insert(db, db.create_system_logs, system_rows)
            else:
                self.written += len(system_rows)

    async def _insert(self, db: DatabaseManager, insert: Callable[..., Any],
                      rows: list[dict[str, Any]]) -> None:
        """Insert rows as one batch; when that fails, row by row, counting the failures."""
        if not rows:
            return
        rows = [{k: v for k, v in r.items() if k != "id"} for r in rows]
        try:
            await insert(rows)
            self.written += len(rows)
            return
        except OrchestratorDBError:
            pass
        for row in rows:
            try:
                await insert([row])
                self.written += 1
            except OrchestratorDBError as exc:
                self.failed += 1
                if not self._warned_fail:
                    self._warned_fail = True
                    sys.stderr.write(f"orchestrator-db: OrchestratorDBHandler could not write a "
                                     f"log record ({exc}); counting them in handler.failed\n")

    @staticmethod
    def _system_row(e: _Entry, created_at: datetime) -> dict[str, Any]:
        details = e.details
        if e.agent_id is not None:  # an agent id that is not a UUID: keep it with the record
            details = {**(details or {}), "agent_id": e.agent_id}
        return {"id": uuid7(), "message": e.message, "log_level": e.level,
                "source": _clean_text(e.source, MAX_SHORT_CHARS), "details": details,
                "created_at": created_at}

    @staticmethod
    def _orphan_row(row: Mapping[str, Any]) -> dict[str, Any]:
        details = {**(row["details"] or {}), "agent_id": row["agent_id"],
                   "log_type": row["log_type"]}
        return {"id": uuid7(), "message": row["message"], "log_level": row["log_level"],
                "source": details.get("logger"), "details": details,
                "created_at": row["created_at"]}


def _canonical_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@contextmanager
def _quiet() -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # the report of drops must not break closing
        sys.stderr.write(f"orchestrator-db: could not record dropped log records: {exc}\n")
