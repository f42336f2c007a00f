"""The change feed's watcher and its subscribers: one watcher per process, any number of readers.

The watcher waits for its ``ChangeReader`` to report a commit (or for the fallback read once a
second), reads the new change rows in position order and offers the events to every
subscription's bounded queue; it never waits for a subscriber. A subscriber that falls behind
reads what it missed from the database (replay), then goes on live with no gap and no duplicate.

Where positions are not committed in order (``ChangeReader.ordered`` is False: PostgreSQL assigns
them from a sequence when a row is written, not when it commits), a transaction can make position
11 visible before position 10 commits. The watcher never steps over such a gap while a
transaction that may own it is still running (it waits for the reader's ``running_writers`` -
on PostgreSQL the writing transactions seen in ``pg_locks`` - to end), so a subscriber never
misses position 10 for good. SQLite has one writer at a time, so its positions always commit in
order.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from ..errors import NotConnectedError, ValidationError
from ..manager import CoreManager
from ..models import LOG_LEVEL_NUMBERS
from ..store.changes import BATCH, ChangeReader
from ..tables import CHANGES_TABLE
from ..validation import check_level
from .event import FEED_ERROR, RESET, ChangeEvent, EventBuilder, Filters

logger = logging.getLogger(__name__)

QUEUE_SIZE = 1000  # events a subscriber may lag behind before it falls back to replay
FALLBACK_INTERVAL = 1.0  # seconds between reads of `changes` with no signal
START_WAIT = 5.0  # seconds start() waits for writers already running (unordered engines)
# The longest a gap is held back for the transactions that may fill it. A transaction that
# wrote a change and stays open longer (forgotten, idle in transaction) must not hold every
# live event back: past this the gap is stepped over, logged and counted in ``skipped_gaps``.
GAP_DEADLINE = 10.0


class _Subscription:
    """A subscriber's bounded queue of event lists; the watcher never waits for it.

    The watcher offers each read's events as one list (shared by every subscriber with the same
    filters, never changed), so a burst costs a subscriber one queue operation, not one per
    event. ``size`` counts the events queued.
    """

    def __init__(self, filters: Filters, maxsize: int) -> None:
        self.filters = filters
        self.maxsize = maxsize
        self.queue: asyncio.Queue[list[ChangeEvent] | None] = asyncio.Queue()
        self.size = 0
        self.overflowed = False
        self.closed = False

    def offer(self, event: ChangeEvent) -> None:
        """Offer one event (a notice passes every filter)."""
        if event.is_notice or self.filters.match(event):
            self.offer_matched([event])

    def offer_matched(self, events: list[ChangeEvent]) -> None:
        """Offer events that passed this subscriber's filters, in position order."""
        if self.overflowed or self.closed or not events:
            return
        if self.size + len(events) > self.maxsize:
            # The subscriber reads the rest from the database when it catches up; the empty
            # list wakes it if it is waiting for the queue.
            self.overflowed = True
            self.queue.put_nowait([])
            return
        self.size += len(events)
        self.queue.put_nowait(events)

    def close(self) -> None:
        self.closed = True
        self.queue.put_nowait(None)

    def reset(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.size = 0
        self.overflowed = False


class ChangeFeed:
    """One watcher per process over a database's changes, shared by any number of subscribers.

    Args:
        db: a connected DatabaseManager (the feed reads through it and never writes).
        poll_interval: seconds between cheap checks for new commits (SQLite ``data_version``;
            PostgreSQL the change log's head, less often after a quiet while), and how soon a
            held-back gap is looked at again (PostgreSQL).
        queue_size: events a subscriber may fall behind before it reads from the database.
    """

    def __init__(self, db: CoreManager, *, poll_interval: float = 0.05,
                 queue_size: int = QUEUE_SIZE) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self.queue_size = queue_size
        self._reader: ChangeReader | None = None  # while running
        self._events = EventBuilder()
        self._subs: set[_Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._position = 0  # every change up to here is delivered (or will never exist)
        self._final_upto = 0  # positions up to here that are missing will never appear
        self._gap: tuple[frozenset[int], int, float] | None = None  # (writers, upto, since)
        self.failures = 0  # consecutive failed reads of the change log
        self.last_error: str | None = None
        self.skipped_gaps = 0
        self._poll_lock = asyncio.Lock()  # the watcher and current_position() both catch up

    # lifecycle -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the watcher is running."""
        return self._task is not None

    @property
    def healthy(self) -> bool:
        """Whether the watcher is running and its last read of the change log succeeded."""
        return self._task is not None and not self._task.done() and self.failures == 0

    def status(self) -> dict[str, Any]:
        """The watcher's state, for ``/healthz``."""
        return {"running": self.running, "healthy": self.healthy, "position": self._position,
                "failures": self.failures, "last_error": self.last_error,
                "skipped_gaps": self.skipped_gaps}

    async def start(self) -> None:
        """Start the watcher (idempotent): events committed from now on reach subscribers."""
        if self._task is not None:
            return
        # db.store raises NotConnectedError with a helpful message.
        reader = self.db.store.change_reader(poll_interval=self.poll_interval)
        # The reader notices commits from here on (it listens, or notes the data version)
        # before the start position is read, so a commit in between is seen, not lost.
        await reader.open()
        try:
            self._position = self._final_upto = await self._start_position(reader)
        except BaseException:
            await reader.close()
            raise
        self._reader, self._gap = reader, None
        # A fresh context: the watcher must not join a transaction of the task that started it.
        self._task = asyncio.create_task(self._watch(reader), name="orchestrator-db-change-feed",
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
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()

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
        rows = await self.db.store.fetch(f"SELECT coalesce(max(position), 0) AS n FROM {CHANGES_TABLE}")
        return int(rows[0]["n"])

    def _running_reader(self) -> ChangeReader:
        if self._reader is None:
            raise NotConnectedError("the change feed is not running; call `await feed.start()`")
        return self._reader

    async def _start_position(self, reader: ChangeReader) -> int:
        newest = await reader.max_position()
        if reader.ordered:
            return newest  # positions commit in order: none below `newest` is still to come
        # A transaction still running may own a position below `newest`; let it finish so its
        # change is not skipped for good (bounded: a long transaction only delays).
        writers = await reader.running_writers()
        deadline = asyncio.get_running_loop().time() + START_WAIT
        while writers & await reader.running_writers():
            if asyncio.get_running_loop().time() > deadline:
                logger.warning("change feed: started while transactions %s still run; a "
                               "change they commit below position %d is not delivered live",
                               sorted(writers), newest)
                break
            await asyncio.sleep(self.poll_interval)
        return newest

    # the watcher -----------------------------------------------------------------------------
    async def _watch(self, reader: ChangeReader) -> None:
        loop = asyncio.get_running_loop()
        next_fallback = loop.time() + FALLBACK_INTERVAL
        while True:
            try:
                # A held-back gap is looked at again soon; otherwise wait for a signal until
                # the next fallback read is due.
                if self._gap is not None:
                    timeout = self.poll_interval
                else:
                    timeout = max(0.0, next_fallback - loop.time())
                changed = await reader.wait(timeout) or self._gap is not None
                if changed or loop.time() >= next_fallback:
                    next_fallback = loop.time() + FALLBACK_INTERVAL
                    await self._poll()
                self.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # counted, reported to subscribers and /healthz; retried
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("change feed: reading changes failed (attempt %d)",
                                 self.failures)
                if self.failures == 1:
                    notice = ChangeEvent.notice(
                        FEED_ERROR, self._position,
                        f"live events are delayed: the change feed cannot read changes "
                        f"({self.last_error}); retrying")
                    for sub in list(self._subs):
                        sub.offer(notice)
                await asyncio.sleep(min(5.0, self.poll_interval * 2 ** min(self.failures, 7)))

    async def _poll(self) -> None:
        """Deliver every change that is committed and safe to hand out, in position order."""
        async with self._poll_lock:
            await self._poll_locked(self._running_reader())

    async def _poll_locked(self, reader: ChangeReader) -> None:
        while True:
            changes = await reader.changes(self._position)
            ready, blocked = self._ready(reader.ordered, self._position, changes)
            if ready:
                events = await self._events.events(reader, ready)
                self._position = events[-1].position
                self._fan_out(events)
            if blocked:
                if not await self._gap_resolved(reader, changes[-1]["position"]):
                    return
                continue  # read again: the gap is either filled now or never will be
            if len(changes) < BATCH:
                return
            await asyncio.sleep(0)  # a backlog is read batch by batch, letting others run

    def _fan_out(self, events: list[ChangeEvent]) -> None:
        """Offer a read's events to every subscriber, filtering once per distinct filter."""
        matched: dict[Filters, list[ChangeEvent]] = {}
        for sub in list(self._subs):
            filters = sub.filters
            passed = matched.get(filters)
            if passed is None:
                passed = matched[filters] = events if filters.everything else [
                    event for event in events if filters.match(event)]
            sub.offer_matched(passed)

    def _ready(self, ordered: bool, position: int, changes: list[dict[str, Any]]
               ) -> tuple[list[dict[str, Any]], bool]:
        """Split off the changes before the first gap that may still fill."""
        if ordered:
            return changes, False  # one writer at a time: positions commit in order
        expected = position + 1
        for index, change in enumerate(changes):
            p = int(change["position"])
            if p != expected and p - 1 > self._final_upto:
                return changes[:index], True
            expected = p + 1
        return changes, False

    async def _gap_resolved(self, reader: ChangeReader, upto: int) -> bool:
        """Return whether every transaction that may own a position ≤ ``upto`` has ended."""
        now = asyncio.get_running_loop().time()
        if self._gap is None:
            # Every position ≤ upto was taken before this moment by a transaction that has
            # ended or is listed now; once all listed ones end, what is missing is gone for good.
            self._gap = (await reader.running_writers(), upto, now)
        writers, gap_upto, since = self._gap
        if writers and writers & await reader.running_writers():
            if now - since < GAP_DEADLINE:
                return False
            self.skipped_gaps += 1
            logger.warning("change feed: transactions %s held a gap below position %d open for "
                           "%.0f s; stepping over it (a change they commit later is not "
                           "delivered live)", sorted(writers), gap_upto, now - since)
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
        return self._iterate(*self._subscription(after, session_id, agent_id, min_level))

    def _subscription(self, after: int | None, session_id: str | None, agent_id: str | None,
                      min_level: str | None) -> tuple[int, Filters]:
        """Check a subscription's arguments; return its start position and filters."""
        if after is not None and (isinstance(after, bool) or not isinstance(after, int)
                                  or after < 0):
            raise ValidationError(f"after must be a position (an integer ≥ 0), got {after!r}",
                                  field="after")
        floor = None
        if min_level is not None:
            floor = LOG_LEVEL_NUMBERS[check_level(min_level, "min_level")]
        filters = Filters(session_id, agent_id, floor)
        if self._task is None:
            raise NotConnectedError(
                "the change feed is not running; call `await feed.start()` or use "
                "`async with ChangeFeed(db) as feed:`"
            )
        # Live from the moment of the call, not of the first iteration: nothing in between lost.
        return (self._position if after is None else after), filters

    def subscribe_batches(self, *, after: int | None = None, session_id: str | None = None,
                          agent_id: str | None = None, min_level: str | None = None,
                          max_batch: int = BATCH) -> AsyncGenerator[list[ChangeEvent], None]:
        """Iterate over lists of change events: ``subscribe``'s events, as many at a time as
        are ready (at most ``max_batch``, never an empty list), in the same order.

        A list holds what was waiting when the subscriber asked (a burst of commits, a replayed
        batch), so a consumer that sends one message per list sends one per burst, not one per
        event. Arguments and behaviour otherwise as ``subscribe``.
        """
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValidationError(f"max_batch must be an integer ≥ 1, got {max_batch!r}",
                                  field="max_batch")
        after, filters = self._subscription(after, session_id, agent_id, min_level)
        return self._batches(after, filters, max_batch)

    async def _iterate(self, after: int, filters: Filters) -> AsyncIterator[ChangeEvent]:
        async with contextlib.aclosing(self._batches(after, filters, BATCH)) as batches:
            async for batch in batches:
                for event in batch:
                    yield event

    async def _batches(self, after: int, filters: Filters, max_batch: int
                       ) -> AsyncGenerator[list[ChangeEvent], None]:
        sub = _Subscription(filters, self.queue_size)
        last = after
        if after > self._position:
            await self._poll()
            if after > self._position and after > await self._running_reader().max_position():
                # A position this database never reached: it was recreated or replaced under
                # the client. Say so, and go on from the head instead of waiting forever.
                last = self._position
                yield [ChangeEvent.notice(
                    RESET, last, f"position {after} is ahead of this database's newest change "
                    f"({last}); the database was recreated or replaced: reload, then follow "
                    "from here")]
        try:
            while not sub.closed and self._task is not None:
                # Attach and note the seam in one step (no await): live events are > seam.
                seam = self._position
                sub.reset()
                self._subs.add(sub)
                if last < seam and (notice := await self._pruned_since(last)) is not None:
                    last = notice.position
                    yield [notice]
                while last < seam and not sub.closed:
                    events = await self._replay(last, seam, max_batch)
                    if not events:
                        break
                    last = events[-1].position
                    matched = [event for event in events if filters.match(event)]
                    if matched:
                        yield matched
                queue = sub.queue
                while not sub.closed and not (sub.overflowed and queue.empty()):
                    # What is waiting, taken without another await: one batch per burst.
                    lists = [await queue.get()]
                    while lists[-1] is not None and not queue.empty():
                        lists.append(queue.get_nowait())
                    batch: list[ChangeEvent] = []
                    for queued in lists:
                        if not queued:  # None: closed; []: overflowed
                            break
                        sub.size -= len(queued)
                        if queued[0].is_notice:  # notices come one to a list
                            batch.append(queued[0])
                        elif queued[0].position > last:  # the usual case: all of them are new
                            batch += queued
                            last = queued[-1].position
                        else:  # replayed already, in part
                            for event in queued:
                                if event.position > last:
                                    last = event.position
                                    batch.append(event)
                    for start in range(0, len(batch), max_batch):
                        yield batch[start:start + max_batch]
                    if lists[-1] is None:
                        break  # closed
        finally:
            self._subs.discard(sub)

    async def _pruned_since(self, after: int) -> ChangeEvent | None:
        """A RESET notice when changes after ``after`` are no longer in the change log (pruned
        by retention or ``prune_changes``), else None: a replay would skip them unsaid."""
        oldest = await self._running_reader().min_position()
        if oldest is None or after >= oldest - 1:
            return None
        return ChangeEvent.notice(
            RESET, oldest - 1, f"the change log now starts at position {oldest}: changes after "
            f"{after} and before it were pruned (or never committed), so some may be missing "
            "here: reload, then follow from here")

    async def _replay(self, after: int, upto: int, limit: int = BATCH) -> list[ChangeEvent]:
        reader = self._running_reader()
        changes = await reader.changes(after, upto, limit)
        return await self._events.events(reader, changes) if changes else []

    async def replay(self, after: int, *, limit: int = BATCH) -> list[ChangeEvent]:
        """Return up to ``limit`` changes after a position (no filters), oldest first.

        Only changes the running feed has delivered are returned, so a page never skips one
        that is still being committed; ``subscribe(after=...)`` is the streaming form.
        """
        if self._task is None:
            raise NotConnectedError("the change feed is not running; call `await feed.start()`")
        return await self._replay(after, self._position, limit)


__all__ = ["FALLBACK_INTERVAL", "GAP_DEADLINE", "QUEUE_SIZE", "START_WAIT", "ChangeFeed"]
