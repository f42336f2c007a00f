"""Group commit on SQLite: the awaited writes of one event-loop turn share one transaction.

Writes that are awaited concurrently (50 coroutines each awaiting create_agent_log) are queued for
one event-loop turn and committed together: one BEGIN IMMEDIATE ... COMMIT for the group, a
SAVEPOINT around each write so a bad row fails only its own caller, and every caller resumes only
after the COMMIT that contains its write. The first writer of a group leads it: it yields one loop
turn (so the writers already scheduled can join), then commits the group itself. When nothing
else is scheduled to run, nobody could join: a lone writer commits at once, without the turn.

A group commits on the event loop's thread whenever nothing is in its way. When something is -
a transaction (or a unit on the connection's thread) holds the connection, or another process
holds the write lock - the queue is handed to one task that waits for it, and that task commits
the groups queued meanwhile the same way, one after another.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ..errors import OrchestratorDBError
from .sqlite_connection import SQLiteConnection, is_busy

T = TypeVar("T")

Outcomes = list[tuple[bool, Any]]


@dataclass
class _GroupWrite:
    """One awaited write waiting for the group commit."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


def _run_group(conn: sqlite3.Connection, fns: list[Callable[[sqlite3.Connection], Any]],
               check: Callable[[sqlite3.Connection], None]) -> Outcomes:
    """Run writes in one transaction; return (ok, result or exception) per write.

    Raises the busy error of BEGIN IMMEDIATE before anything ran, so the caller can retry the
    whole group where it may wait; ``check`` runs once the write lock is held.
    """
    conn.execute("BEGIN IMMEDIATE")
    check(conn)
    outcomes: Outcomes = []
    try:
        if len(fns) == 1:
            try:
                outcomes.append((True, fns[0](conn)))
            except Exception as exc:  # noqa: BLE001 - returned to its caller
                conn.execute("ROLLBACK")
                return [(False, exc)]
        else:
            for fn in fns:
                conn.execute("SAVEPOINT group_write")
                try:
                    outcomes.append((True, fn(conn)))
                except Exception as exc:  # noqa: BLE001 - returned to its caller
                    conn.execute("ROLLBACK TO group_write")
                    outcomes.append((False, exc))
                conn.execute("RELEASE group_write")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


# A caller looping over lone writes still yields this often (seconds), so that timers and
# sockets are served while it writes.
YIELD_EVERY = 0.002


def _others_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether other callbacks wait to run in this loop turn (writers that could join a group).

    When none does, yielding the turn would only delay a lone write: nothing could join it but
    work arriving from outside meanwhile, which the next group takes as well. asyncio's loop
    keeps that queue in ``_ready``; a loop without it (uvloop) is always given the turn.
    """
    ready = getattr(loop, "_ready", None)
    return ready is None or len(ready) > 0


class SQLiteGroupCommit:
    """The queue of awaited writes and the one way its groups are committed."""

    def __init__(self, connection: SQLiteConnection) -> None:
        self.connection = connection
        self._queue: list[_GroupWrite] = []
        self._leading = False  # a leader is yielding its loop turn before it commits
        self._waiter: asyncio.Task[None] | None = None  # the task waiting to commit the queue
        self._yielded_at = 0.0  # loop time a leader last gave up its turn

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in this loop turn's group; return its result once the group committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_GroupWrite(fn, future))
        if self._leading or self._waiter is not None:
            return cast(T, await future)
        self._leading = True  # this caller leads the group
        if _others_ready(loop) or loop.time() - self._yielded_at >= YIELD_EVERY:
            try:
                await asyncio.sleep(0)
                self._yielded_at = loop.time()
            except asyncio.CancelledError:
                future.cancel()
                loop.call_soon(self._flush)  # the others still get their commit
                raise
        self._flush()
        return cast(T, future.result() if future.done() else await future)

    async def drain(self) -> None:
        """Return once every queued write has been committed (or failed)."""
        while self._queue or self._waiter is not None:
            if self._waiter is not None:
                await asyncio.shield(self._waiter)
            else:
                await asyncio.sleep(0)  # a leader is about to commit

    def _flush(self) -> None:
        """Commit the queue here and now if nothing is in its way; otherwise wait in a task."""
        self._leading = False
        if self._waiter is not None or not self._queue:
            return
        if self.connection.lock.locked() or not self._commit_here():
            self._waiter = asyncio.get_running_loop().create_task(self._flush_waiting())

    async def _flush_waiting(self) -> None:
        try:
            while self._queue:
                async with self.connection.lock:
                    if not self._commit_here():
                        # Another process holds the write lock: wait for it on the thread.
                        await self._commit_on_thread()
        finally:
            self._waiter = None
            if self._queue and not self._leading:
                self._leading = True
                asyncio.get_running_loop().call_soon(self._flush)

    def _take(self) -> list[_GroupWrite]:
        group = [w for w in self._queue if not w.future.done()]  # a cancelled caller drops out
        self._queue = []
        return group

    def _commit_here(self) -> bool:
        """Commit the queued group on the loop's thread; False, still queued, if it must wait."""
        group = self._take()
        if not group:
            return True
        try:
            outcomes = _run_group(self.connection.get(), [w.fn for w in group],
                                  self.connection.check_file)
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                self._queue[:0] = group
                return False
            self._settle(group, error=exc)
        except BaseException as exc:
            self._settle(group, error=exc)  # nobody is left waiting
            if not isinstance(exc, Exception):
                raise
        else:
            self._settle(group, outcomes)
        return True

    async def _commit_on_thread(self) -> None:
        """Commit the queued group on the connection's thread, allowed to wait there."""
        group = self._take()
        if not group:
            return
        connection = self.connection
        try:
            run = functools.partial(_run_group, connection.get(), [w.fn for w in group],
                                    connection.check_file)
            outcomes = await connection.in_thread(connection.waiting, run)
        except BaseException as exc:
            self._settle(group, error=exc)  # handed to every waiting caller
            if not isinstance(exc, Exception):
                raise
        else:
            self._settle(group, outcomes)

    def _settle(self, group: list[_GroupWrite], outcomes: Outcomes | None = None,
                error: BaseException | None = None) -> None:
        """Resume every caller of a group with its own result or error (``error``: all of them)."""
        for index, write in enumerate(group):
            if write.future.done():
                continue
            if outcomes is None:
                assert error is not None
                ok, value = False, error
            else:
                ok, value = outcomes[index]
            if ok:
                write.future.set_result(value)
            elif isinstance(value, sqlite3.Error):
                write.future.set_exception(self.connection.error(value))
            elif isinstance(value, asyncio.CancelledError):
                write.future.set_exception(OrchestratorDBError("the group commit was cancelled"))
            else:
                write.future.set_exception(value)


__all__ = ["SQLiteGroupCommit"]
