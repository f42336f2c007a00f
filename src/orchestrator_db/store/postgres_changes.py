"""The change log on PostgreSQL: its head polled on a dedicated connection, reads through the pool.

Writers send no signal: up to migration 0005 the triggers NOTIFYed after each statement, and
PostgreSQL takes its notification queue under one database-wide lock at commit, so 32 agents
committing single rows ran at a third of their speed. Now the reader asks for the change log's
head (``max(position)``, one backward index probe) on a connection of its own every
``poll_interval`` while changes keep coming, backing off to ``IDLE_INTERVAL`` once the database
has been quiet for a while. Every server process polls for itself, so each sees every change,
whichever process made it; a closed connection is reopened and the reopening is reported as a
possible change, and the feed reads ``changes`` now and then anyway.

PostgreSQL assigns positions from a sequence when a row is written, not when it commits, so
positions can become visible out of order (``ordered = False``); ``running_writers`` tells the
feed which transactions may still fill a gap. A position that commits below the head once the
head was seen is such a gap: the feed holds it and reads again every ``poll_interval`` until it
fills or its writers end, so the head alone is enough to notice every commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from ..config import postgres_connect_options
from ..tables import CHANGES_TABLE
from .changes import ChangeReader

if TYPE_CHECKING:
    from .postgres import PostgresStore

# The longest an idle reader waits between two looks at the head; the interval doubles from
# ``poll_interval`` for every IDLE_STEP seconds without a change, up to this.
IDLE_INTERVAL = 0.2
IDLE_STEP = 1.0
HEAD_SQL = f"SELECT coalesce(max(position), 0) AS head FROM {CHANGES_TABLE}"


class PostgresChangeReader(ChangeReader):
    """Polls the change log's head; reads ``changes`` and records through the store's pool."""

    ordered = False

    def __init__(self, store: PostgresStore, *, poll_interval: float) -> None:
        super().__init__(store, poll_interval=poll_interval)
        self.url = store.target.url
        self._conn: asyncpg.Connection | None = None
        self._head = 0  # the head last seen
        self._changed_at = 0.0  # loop time the head last moved

    async def open(self) -> None:
        if self._conn is None:
            await self._connect()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _connect(self) -> None:
        url, timeout = postgres_connect_options(self.url)  # asyncpg takes no connect_timeout
        conn = await asyncpg.connect(url, timeout=timeout)
        try:
            self._head = int(await conn.fetchval(HEAD_SQL))
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._changed_at = asyncio.get_running_loop().time()

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await self.store.fetch(sql, params)

    async def check(self) -> bool:
        """Return whether the head moved; True also when the connection had to be reopened."""
        conn = self._conn
        if conn is None or conn.is_closed():
            await self.close()
            await self._connect()
            return True  # commits may have been missed meanwhile
        try:
            head = int(await conn.fetchval(HEAD_SQL))
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError,
                asyncpg.exceptions.OperatorInterventionError):
            # The server ended the connection (restart, pg_terminate_backend): open another.
            await self.close()
            await self._connect()
            return True
        changed, self._head = head != self._head, head
        if changed:
            self._changed_at = asyncio.get_running_loop().time()
        return changed

    def interval(self) -> float:
        idle = asyncio.get_running_loop().time() - self._changed_at
        slowest = max(self.poll_interval, IDLE_INTERVAL)
        return min(slowest, self.poll_interval * float(2 ** min(8, int(idle / IDLE_STEP))))

    async def running_writers(self) -> frozenset[int]:
        """Return the ids of the open transactions that wrote to this change log."""
        # A transaction that inserted into `changes` holds a RowExclusiveLock on it until it
        # ends; transactions that wrote nothing there (an unrelated session idle in a
        # transaction, another schema's writers) cannot own a gap and are not waited for.
        rows = await self.fetch(
            "SELECT DISTINCT a.backend_xid::text::bigint AS xid FROM pg_locks AS l "
            "JOIN pg_stat_activity AS a ON a.pid = l.pid "
            "WHERE l.locktype = 'relation' AND l.relation = $1::regclass "
            "AND l.mode = 'RowExclusiveLock' AND l.granted AND a.backend_xid IS NOT NULL",
            [CHANGES_TABLE],
        )
        return frozenset(int(r["xid"]) for r in rows)


__all__ = ["IDLE_INTERVAL", "PostgresChangeReader"]
