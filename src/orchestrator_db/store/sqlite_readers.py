"""The SQLite store's readers: query-only connections, so reads never wait for the writer.

In WAL mode any number of readers run beside the one writer, each in a snapshot of the last
commit. The store's one writing connection and its lock are then needed only for writes and for
reads inside a transaction (which must see the transaction's own writes):

- ``inline``: one connection used only on the event loop's thread, never across an ``await``,
  for short reads outside a transaction (no thread hop, no lock: ``/healthz`` answers while a
  transaction or a long read is under way).
- the pool: ``size`` connections used on worker threads, for long reads (``heavy``) and for read
  snapshots (``snapshot()``), each connection held by one of them at a time.

A read starts a new read transaction, so it sees every commit made before it (read-your-writes:
an awaited write has committed when it returns). Without WAL (the file could not be switched to
it) readers would block the writer and be blocked by it, so the store makes no readers and keeps
reading through its one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..errors import NotConnectedError
from .sqlite_connection import close_on, run_on, setup_connection, translate_error

T = TypeVar("T")

# The pool's connections and threads. A long read computes without the GIL, but on a core the
# event loop may need: one core is left to the loop (measured on 2 cores: one thread running a
# 1M-row aggregate leaves the loop's timers p99 ~2 ms late, two ~6 ms, with spikes past 50 ms
# when other processes want the cores too).
DEFAULT_READERS = max(1, min(4, (os.cpu_count() or 2) - 1))


def _open_reader(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # The writer's settings (PRAGMA answers the same on either); a WAL reader's busy
        # timeout only matters while another connection recovers or resets the WAL.
        setup_connection(conn, busy_timeout_ms)
        conn.execute("PRAGMA query_only = ON")  # a write through a reader would be a bug
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteReaders:
    """The inline reader and the pool of reader connections of one SQLite store."""

    def __init__(self, path: Path, busy_timeout_ms: int, size: int = DEFAULT_READERS) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.size = size
        self.inline: sqlite3.Connection | None = None
        self._all: list[sqlite3.Connection] = []
        self._free: list[sqlite3.Connection] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._executor: ThreadPoolExecutor | None = None

    @property
    def is_open(self) -> bool:
        return self.inline is not None

    def owns(self, conn: sqlite3.Connection) -> bool:
        """Whether ``conn`` is one of the pool's connections."""
        return any(conn is c for c in self._all)

    async def open(self) -> None:
        """Open the inline reader and the pool (on the pool's threads: opening reads the file)."""
        self._executor = ThreadPoolExecutor(max_workers=self.size,
                                            thread_name_prefix="orchestrator-db-read")
        loop = asyncio.get_running_loop()
        try:
            conns = await asyncio.gather(*(
                loop.run_in_executor(self._executor, _open_reader, self.path,
                                     self.busy_timeout_ms)
                for _ in range(self.size + 1)), return_exceptions=True)
            failed = [c for c in conns if isinstance(c, BaseException)]
            opened = [c for c in conns if isinstance(c, sqlite3.Connection)]
            if failed:
                for conn in opened:
                    conn.close()
                exc = failed[0]
                raise translate_error(exc, self.busy_timeout_ms) if isinstance(
                    exc, sqlite3.Error) else exc
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        inline = opened.pop()
        inline.execute("PRAGMA busy_timeout = 0")  # on the loop: never wait there
        self.inline = inline
        self._all = list(opened)
        self._free = list(opened)

    async def close(self) -> None:
        """Wait for the reads in flight, then close every reader and stop the threads."""
        if self.inline is None:
            return
        inline, self.inline = self.inline, None
        held = []
        with contextlib.suppress(NotConnectedError):
            for _ in self._all:
                held.append(await self.acquire())
        executor, self._executor = self._executor, None
        self._all, self._free = [], []
        conns = [inline, *held]
        if executor is not None:
            # Closing reads the WAL index; on the pool's threads, not the loop.
            await close_on(executor, _close_all, conns)  # or here, once it stopped taking work
            executor.shutdown(wait=False)
        else:  # pragma: no cover - the executor lives as long as the readers
            _close_all(conns)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def get_inline(self) -> sqlite3.Connection:
        if self.inline is None:
            raise NotConnectedError(
                "the database is not connected; call `await db.connect()` or use `async with`")
        return self.inline

    async def acquire(self) -> sqlite3.Connection:
        """Take a pool connection, waiting for one to be released if all are in use."""
        while not self._free:
            if self.inline is None and not self._all:
                raise NotConnectedError(
                    "the database is not connected; call `await db.connect()` or use `async with`")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                self._wake_one()  # it may have been this one's turn: pass it on
                raise
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        return self._free.pop()

    def release(self, conn: sqlite3.Connection) -> None:
        """Hand a pool connection back (and wake one waiting reader)."""
        self._free.append(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        if not self._free:
            return
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                break

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on a pool thread; on cancellation, wait for it before leaving."""
        if self._executor is None:
            raise NotConnectedError(
                "the database is not connected; call `await db.connect()` or use `async with`")
        return await run_on(self._executor, fn, *args)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run the read ``fn(conn)`` on a pool connection, on a pool thread."""
        conn = await self.acquire()
        try:
            return await self.in_thread(fn, conn)
        finally:
            self.release(conn)


def _close_all(conns: list[sqlite3.Connection]) -> None:
    for conn in conns:
        with contextlib.suppress(sqlite3.Error):
            conn.close()


def is_wal(conn: sqlite3.Connection) -> bool:
    """Whether the database of ``conn`` is in WAL mode (readers then never block the writer)."""
    row = conn.execute("PRAGMA journal_mode").fetchone()
    return bool(row) and str(row[0]).lower() == "wal"


__all__ = ["DEFAULT_READERS", "SQLiteReaders", "is_wal"]
