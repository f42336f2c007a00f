"""The change feed behind live updates (design §6): every committed change, from any process.

Triggers (migration 0002) append one row per inserted, updated or deleted record to ``changes``;
its ``position`` orders all changes of a database, so a reader that remembers the last position
it handled can always ask for what came after (``?after=<position>``). ``ChangeFeed`` runs one
watcher per process that notices new commits cheaply and fans the events out to subscribers::

    async with DatabaseManager(url=...) as db, ChangeFeed(db) as feed:
        async for event in feed.subscribe(after=last_seen, session_id="s-1", min_level="INFO"):
            send(event.to_dict())

How commits are noticed:

- SQLite: ``PRAGMA data_version`` on the feed's own read-only connection, every
  ``poll_interval`` (50 ms). It changes only when another connection committed, so an idle
  database costs one cheap PRAGMA per tick, and commits of this process's manager count too.
- PostgreSQL: the triggers ``NOTIFY orchestrator_db_changes``; the feed ``LISTEN``s on a
  dedicated connection (not one of the pool's), so every server process sees every change, and
  reads ``changes`` once a second anyway in case a notification was lost with its connection.

An event's ``row`` is the record as ``DatabaseManager.get_*`` returns it, read back by id when the
event is delivered (one SELECT per table per batch): a replayed insert of a record updated since
shows the newer row, and ``row`` is None for a delete or a record that no longer exists.

PostgreSQL assigns positions from a sequence when a row is written, not when it commits, so a
transaction can make position 11 visible before position 10 commits. The watcher never steps
over such a gap while a transaction that may own it is still running (it waits for the writing
transactions seen in ``pg_locks`` to end), so a subscriber never misses position 10 for good.
SQLite has one writer at a time, so its positions always commit in order.

Retention: ``changes`` grows with every write. ``prune_changes(db, keep_last=..., older_than=...)``
deletes old change rows (the records themselves are untouched); a client that resumes from a
pruned position gets the changes that are left. Run it from a scheduled job or after ``prune``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, assert_never

from .config import Dialect
from .errors import NotConnectedError, ValidationError
from .manager import CoreManager as DatabaseManager
from .models import LOG_LEVEL_NUMBERS, utc_now
from .store.sqlite import _rows, translate_error
from .tables import COLUMNS
from .validation import check_level, check_time

logger = logging.getLogger(__name__)

CHANNEL = "orchestrator_db_changes"
TABLES = tuple(COLUMNS)
OPS = ("insert", "update", "delete")
LOG_TABLES = frozenset({"agent_logs", "system_logs"})
AGENT_CHILD_TABLES = frozenset({"prompts", "agent_logs"})

BATCH = 500  # change rows read per query (live and replay)
QUEUE_SIZE = 1000  # events a subscriber may lag behind before it falls back to replay
FALLBACK_INTERVAL = 1.0  # seconds between reads of `changes` with no signal
START_WAIT = 5.0  # seconds start() waits for PostgreSQL writers already running
SESSION_CACHE = 10_000  # agent id -> session id entries kept
PRUNE_CHUNK = 50_000  # positions deleted per transaction by prune_changes

_CHANGE_COLUMNS = "position, table_name, op, row_id, session_id, agent_id, log_level"


@dataclass(frozen=True)
class ChangeEvent:
    """One committed insert, update or delete of a record."""

    position: int
    table: str
    op: str
    id: str
    row: dict[str, Any] | None
    session_id: str | None
    agent_id: str | None
    log_level: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON-ready dict."""
        return {
            "position": self.position, "table": self.table, "op": self.op, "id": self.id,
            "row": self.row, "session_id": self.session_id, "agent_id": self.agent_id,
            "log_level": self.log_level,
        }


@dataclass(frozen=True)
class _Filters:
    session_id: str | None
    agent_id: str | None
    min_level: int | None

    def match(self, event: ChangeEvent) -> bool:
        if self.session_id is not None and event.session_id != self.session_id:
            return False
        if self.agent_id is not None and event.agent_id != self.agent_id:
            return False
        if self.min_level is not None and event.table in LOG_TABLES:
            return LOG_LEVEL_NUMBERS.get(event.log_level or "", 0) >= self.min_level
        return True


class _Subscription:
    """A subscriber's bounded queue; the watcher never waits for it."""

    def __init__(self, filters: _Filters, maxsize: int) -> None:
        self.filters = filters
        self.queue: asyncio.Queue[ChangeEvent | None] = asyncio.Queue(maxsize)
        self.overflowed = False
        self.closed = False

    def offer(self, event: ChangeEvent) -> None:
        if self.overflowed or self.closed or not self.filters.match(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # The subscriber reads the rest from the database when it catches up.
            self.overflowed = True

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    def reset(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.overflowed = False


class _Reader:
    """Reads change rows and records; SQLite through its own connection, PostgreSQL the pool."""

    def __init__(self, db: DatabaseManager) -> None:
        self.db = db
        self.dialect = db.dialect
        self.conn: sqlite3.Connection | None = None
        self.sessions: dict[str, str] = {}

    def open(self) -> None:
        if self.dialect is Dialect.SQLITE:
            assert self.db.target.path is not None
            conn = sqlite3.connect(self.db.target.path, isolation_level=None,
                                   check_same_thread=False)
            # The feed only reads; a write through this connection would be a bug.
            conn.execute("PRAGMA query_only = ON")
            # A WAL reader waits only while another connection recovers or resets the WAL.
            conn.execute("PRAGMA busy_timeout = 5000")
            self.conn = conn

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        dialect = self.dialect
        if dialect is Dialect.SQLITE:
            if self.conn is None:
                raise NotConnectedError("the change feed is stopped; call `await feed.start()`")
            # Short WAL reads never wait for writers: run them on the loop, no thread hop.
            try:
                return _rows(self.conn.execute(sql, params))
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc
        elif dialect is Dialect.POSTGRES:
            return await self.db.store.fetch(sql, params)
        else:
            assert_never(dialect)

    def data_version(self) -> int:
        assert self.conn is not None
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    async def max_position(self) -> int:
        rows = await self.fetch("SELECT coalesce(max(position), 0) AS n FROM changes")
        return int(rows[0]["n"])

    async def changes(self, after: int, upto: int | None = None, limit: int = BATCH
                      ) -> list[dict[str, Any]]:
        q = self.db.store.query()
        sql = f"SELECT {_CHANGE_COLUMNS} FROM changes WHERE position > {q.p(after)}"
        if upto is not None:
            sql += f" AND position <= {q.p(upto)}"
        sql += f" ORDER BY position LIMIT {q.p(limit)}"
        return await self.fetch(sql, q.params)

    async def running_writers(self) -> frozenset[int]:
        """Return the ids of the PostgreSQL transactions that hold an xid (they may write)."""
        # Each running transaction holds an exclusive lock on its own xid; only sessions of
        # this database can write to its `changes`.
        rows = await self.fetch(
            "SELECT l.transactionid::text::bigint AS xid FROM pg_locks AS l "
            "JOIN pg_stat_activity AS a ON a.pid = l.pid "
            "WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted "
            "AND a.datname = current_database()"
        )
        return frozenset(int(r["xid"]) for r in rows)

    async def events(self, changes: list[dict[str, Any]]) -> list[ChangeEvent]:
        """Turn change rows into events, reading the records back (one SELECT per table).

        The session of a prompt or log event is its agent's session at delivery time: from the
        agent's own change rows seen so far (in position order), else from the agents table.
        """
        wanted: dict[str, set[str]] = {}
        for change in changes:
            if change["op"] != "delete":
                wanted.setdefault(change["table_name"], set()).add(change["row_id"])
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for table, ids in wanted.items():
            for row in await self._select(table, COLUMNS[table], ids):
                rows[(table, row["id"])] = row
        missing = {c["agent_id"] for c in changes if c["table_name"] in AGENT_CHILD_TABLES
                   and c["agent_id"] is not None and c["agent_id"] not in self.sessions}
        if missing:
            for row in await self._select("agents", ("id", "session_id"), missing):
                self._remember(row["id"], row["session_id"])
        out = []
        for change in changes:
            table = change["table_name"]
            session_id = change["session_id"]
            if table == "agents" and session_id is not None:
                self._remember(change["agent_id"], session_id)
            elif session_id is None and table in AGENT_CHILD_TABLES and change["agent_id"]:
                session_id = self.sessions.get(change["agent_id"])
            out.append(ChangeEvent(
                position=int(change["position"]), table=table, op=change["op"],
                id=change["row_id"], row=rows.get((table, change["row_id"])),
                session_id=session_id, agent_id=change["agent_id"],
                log_level=change["log_level"],
            ))
        return out

    async def _select(self, table: str, columns: Iterable[str], ids: set[str]
                      ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        ordered = sorted(ids)
        for start in range(0, len(ordered), BATCH):
            q = self.db.store.query()
            marks = ", ".join(q.p(i) for i in ordered[start:start + BATCH])
            sql = f"SELECT {', '.join(columns)} FROM {table} WHERE id IN ({marks})"
            found += await self.fetch(sql, q.params)
        return found

    def _remember(self, agent_id: str, session_id: str) -> None:
        if len(self.sessions) >= SESSION_CACHE and agent_id not in self.sessions:
            self.sessions.clear()
        self.sessions[agent_id] = session_id


class ChangeFeed:
    """One watcher per process over a database's changes, shared by any number of subscribers.

    Args:
        db: a connected DatabaseManager (the feed reads through it and never writes).
        poll_interval: seconds between cheap checks for new commits (SQLite ``data_version``;
            on PostgreSQL, how soon a held-back gap is looked at again).
        queue_size: events a subscriber may fall behind before it reads from the database.
    """

    def __init__(self, db: DatabaseManager, *, poll_interval: float = 0.05,
                 queue_size: int = QUEUE_SIZE) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self.queue_size = queue_size
        self._reader = _Reader(db)
        self._subs: set[_Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None  # asyncpg.Connection while listening
        self._wake = asyncio.Event()
        self._position = 0  # every change up to here is delivered (or will never exist)
        self._final_upto = 0  # positions up to here that are missing will never appear
        self._gap: tuple[frozenset[int], int] | None = None  # (writers to wait for, upto)
        self._version = 0  # SQLite data_version last seen
        self._poll_lock = asyncio.Lock()  # the watcher and current_position() both catch up

    # lifecycle -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the watcher is running."""
        return self._task is not None

    async def start(self) -> None:
        """Start the watcher (idempotent): events committed from now on reach subscribers."""
        if self._task is not None:
            return
        self.db.store  # noqa: B018 - raises NotConnectedError with a helpful message
        self._reader.open()
        try:
            # Listen (or note the data version) before reading the start position, so that a
            # commit in between is seen by the first poll rather than lost.
            if self.db.dialect is Dialect.POSTGRES:
                await self._listen()
            else:
                self._version = self._reader.data_version()
            self._position = self._final_upto = await self._start_position()
        except BaseException:
            await self._unlisten()
            self._reader.close()
            raise
        # A fresh context: the watcher must not join a transaction of the task that started it.
        self._task = asyncio.create_task(self._watch(), name="orchestrator-db-change-feed",
                                         context=contextvars.Context())

    async def stop(self) -> None:
        """Stop the watcher and end every subscription."""
        task, self._task = self._task, None
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()
        for sub in list(self._subs):
            sub.close()
        self._subs.clear()
        await self._unlisten()
        self._reader.close()

    async def __aenter__(self) -> ChangeFeed:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def current_position(self) -> int:
        """Return the position of the newest change committed before the call.

        While running, the feed first catches up (delivering what it reads to subscribers), so a
        client that starts from this position after a write it knows of does not get that
        write's event, on whichever server process it asks. Stopped: the database's newest.
        """
        if self._task is not None:
            await self._poll()
            return self._position
        rows = await self.db.store.fetch("SELECT coalesce(max(position), 0) AS n FROM changes")
        return int(rows[0]["n"])

    async def _start_position(self) -> int:
        newest = await self._reader.max_position()
        dialect = self.db.dialect
        if dialect is Dialect.SQLITE:
            return newest
        elif dialect is Dialect.POSTGRES:
            # A transaction still running may own a position below `newest`; let it finish so
            # its change is not skipped for good (bounded: a long transaction only delays).
            writers = await self._reader.running_writers()
            deadline = asyncio.get_running_loop().time() + START_WAIT
            while writers & await self._reader.running_writers():
                if asyncio.get_running_loop().time() > deadline:
                    logger.warning("change feed: started while transactions %s still run; a "
                                   "change they commit below position %d is not delivered live",
                                   sorted(writers), newest)
                    break
                await asyncio.sleep(self.poll_interval)
            return newest
        else:
            assert_never(dialect)

    async def _listen(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.db.target.url)
        try:
            await conn.add_listener(CHANNEL, self._notified)
        except BaseException:
            await conn.close()
            raise
        self._listener = conn

    async def _unlisten(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def _notified(self, *args: object) -> None:
        self._wake.set()

    # the watcher -----------------------------------------------------------------------------
    async def _watch(self) -> None:
        dialect = self.db.dialect
        loop = asyncio.get_running_loop()
        version = self._version
        next_fallback = loop.time() + FALLBACK_INTERVAL
        failures = 0
        while True:
            try:
                changed = False
                if dialect is Dialect.SQLITE:
                    await asyncio.sleep(self.poll_interval)
                    current = self._reader.data_version()
                    changed, version = current != version, current
                elif dialect is Dialect.POSTGRES:
                    timeout = self.poll_interval if self._gap else FALLBACK_INTERVAL
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
                    # cancellation that stop() sends when a notification lands at that moment.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await self._wake.wait()
                    changed = self._wake.is_set() or self._gap is not None
                    self._wake.clear()
                    if self._listener is None or self._listener.is_closed():
                        await self._unlisten()
                        await self._listen()
                        changed = True  # notifications may have been missed meanwhile
                else:
                    assert_never(dialect)
                if changed or loop.time() >= next_fallback:
                    next_fallback = loop.time() + FALLBACK_INTERVAL
                    await self._poll()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                logger.exception("change feed: reading changes failed (attempt %d)", failures)
                await asyncio.sleep(min(5.0, self.poll_interval * 2 ** min(failures, 7)))

    async def _poll(self) -> None:
        """Deliver every change that is committed and safe to hand out, in position order."""
        async with self._poll_lock:
            await self._poll_locked()

    async def _poll_locked(self) -> None:
        while True:
            changes = await self._reader.changes(self._position)
            ready, blocked = self._ready(self._position, changes)
            if ready:
                events = await self._reader.events(ready)
                self._position = events[-1].position
                for sub in list(self._subs):
                    for event in events:
                        sub.offer(event)
            if blocked:
                if not await self._gap_resolved(changes[-1]["position"]):
                    return
                continue  # read again: the gap is either filled now or never will be
            if len(changes) < BATCH:
                return

    def _ready(self, position: int, changes: list[dict[str, Any]]
               ) -> tuple[list[dict[str, Any]], bool]:
        """Split off the changes before the first gap that may still fill."""
        if self.db.dialect is Dialect.SQLITE:
            return changes, False  # one writer at a time: positions commit in order
        expected = position + 1
        for index, change in enumerate(changes):
            p = int(change["position"])
            if p != expected and p - 1 > self._final_upto:
                return changes[:index], True
            expected = p + 1
        return changes, False

    async def _gap_resolved(self, upto: int) -> bool:
        """Return whether every transaction that may own a position ≤ ``upto`` has ended."""
        if self._gap is None:
            # Every position ≤ upto was taken before this moment by a transaction that has
            # ended or is listed now; once all listed ones end, what is missing is gone for good.
            self._gap = (await self._reader.running_writers(), upto)
        writers, gap_upto = self._gap
        if writers and writers & await self._reader.running_writers():
            return False
        self._gap = None
        self._final_upto = max(self._final_upto, gap_upto)
        return True

    # subscribers -----------------------------------------------------------------------------
    def subscribe(self, *, after: int | None = None, session_id: str | None = None,
                  agent_id: str | None = None, min_level: str | None = None
                  ) -> AsyncIterator[ChangeEvent]:
        """Iterate over change events, optionally replaying those after a position first.

        Args:
            after: replay every change with a greater position from the database, then go on
                live with no gap and no duplicate. None: live events only.
            session_id, agent_id: only events of this session / runtime agent.
            min_level: drop log events below this level (other events pass).

        The iterator ends when the feed stops. A subscriber that falls ``queue_size`` events
        behind is not dropped: it reads what it missed from the database, then goes on live.
        """
        if after is not None and (isinstance(after, bool) or not isinstance(after, int)
                                  or after < 0):
            raise ValidationError(f"after must be a position (an integer ≥ 0), got {after!r}",
                                  field="after")
        floor = None
        if min_level is not None:
            floor = LOG_LEVEL_NUMBERS[check_level(min_level, "min_level")]
        filters = _Filters(session_id, agent_id, floor)
        if self._task is None:
            raise NotConnectedError(
                "the change feed is not running; call `await feed.start()` or use "
                "`async with ChangeFeed(db) as feed:`"
            )
        # Live from the moment of the call, not of the first iteration: nothing in between lost.
        return self._iterate(self._position if after is None else after, filters)

    async def _iterate(self, after: int, filters: _Filters) -> AsyncIterator[ChangeEvent]:
        sub = _Subscription(filters, self.queue_size)
        last = after
        try:
            while not sub.closed and self._task is not None:
                # Attach and note the seam in one step (no await): live events are > seam.
                seam = self._position
                sub.reset()
                self._subs.add(sub)
                while last < seam and not sub.closed:
                    events = await self._replay(last, seam)
                    if not events:
                        break
                    for event in events:
                        last = event.position
                        if filters.match(event):
                            yield event
                while not sub.closed and not (sub.overflowed and sub.queue.empty()):
                    item = await sub.queue.get()
                    if item is None:
                        break
                    if item.position <= last:
                        continue
                    last = item.position
                    yield item
        finally:
            self._subs.discard(sub)

    async def _replay(self, after: int, upto: int, limit: int = BATCH) -> list[ChangeEvent]:
        changes = await self._reader.changes(after, upto, limit)
        return await self._reader.events(changes) if changes else []

    async def replay(self, after: int, *, limit: int = BATCH) -> list[ChangeEvent]:
        """Return up to ``limit`` changes after a position (no filters), oldest first.

        Only changes the running feed has delivered are returned, so a page never skips one
        that is still being committed; ``subscribe(after=...)`` is the streaming form.
        """
        if self._task is None:
            raise NotConnectedError("the change feed is not running; call `await feed.start()`")
        return await self._replay(after, self._position, limit)


# retention -----------------------------------------------------------------------------------
async def prune_changes(db: DatabaseManager, keep_last: int | None = None,
                        older_than: timedelta | datetime | str | None = None) -> int:
    """Delete old rows of the change log and return how many went.

    Args:
        keep_last: keep at least the newest ``keep_last`` changes (≥ 1).
        older_than: delete changes recorded before this: a ``timedelta`` counts back from now,
            a datetime or ISO 8601 string is the cutoff itself.

    With both, a change goes only when both say so. The newest change is always kept (on SQLite
    that keeps positions from being reused). Records are never touched; a subscriber resuming
    from a pruned position gets the changes still there. Deletes in chunks of ``PRUNE_CHUNK``
    positions, one transaction each, so writers are never held up for long.
    """
    if keep_last is None and older_than is None:
        raise ValidationError("give keep_last, older_than or both", field="keep_last")
    store = db.store
    limits: list[int] = []
    rows = await store.fetch("SELECT min(position) AS lo, max(position) AS hi FROM changes")
    lo, hi = rows[0]["lo"], rows[0]["hi"]
    if hi is None:
        return 0
    limits.append(int(hi) - 1)
    if keep_last is not None:
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
            raise ValidationError(f"keep_last must be an integer ≥ 1, got {keep_last!r}",
                                  field="keep_last")
        q = store.query()
        rows = await store.fetch(
            f"SELECT position FROM changes ORDER BY position DESC "
            f"LIMIT {q.p(1)} OFFSET {q.p(keep_last)}", q.params,
        )
        if not rows:
            return 0
        limits.append(int(rows[0]["position"]))
    if older_than is not None:
        if isinstance(older_than, timedelta):
            cutoff = utc_now() - older_than
        else:
            found = check_time(older_than, "older_than")
            assert found is not None
            cutoff = found
        q = store.query()
        rows = await store.fetch(
            f"SELECT max(position) AS n FROM changes WHERE created_at < "
            f"{q.p(store.ts(cutoff))}", q.params,
        )
        if rows[0]["n"] is None:
            return 0
        limits.append(int(rows[0]["n"]))
    upto = min(limits)
    deleted = 0
    for start in range(int(lo), upto + 1, PRUNE_CHUNK):
        q = store.query()
        deleted += await store.execute(
            f"DELETE FROM changes WHERE position >= {q.p(start)} "
            f"AND position <= {q.p(min(start + PRUNE_CHUNK - 1, upto))}", q.params,
        )
    return deleted


def event_filter(session_id: str | None = None, agent_id: str | None = None,
                 min_level: str | None = None) -> Callable[[ChangeEvent], bool]:
    """Return the predicate ``subscribe`` applies, for callers that filter replayed events."""
    floor = None if min_level is None else LOG_LEVEL_NUMBERS[check_level(min_level, "min_level")]
    return _Filters(session_id, agent_id, floor).match


__all__ = ["CHANNEL", "ChangeEvent", "ChangeFeed", "event_filter", "prune_changes"]
