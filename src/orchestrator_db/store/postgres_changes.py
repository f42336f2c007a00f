"""The change log on PostgreSQL: LISTEN on a dedicated connection, reads through the pool.

The triggers ``NOTIFY`` ``CHANNEL`` after each statement that changed records. The reader
``LISTEN``s on a connection of its own (not one of the pool's, which go back and forth between
callers), so every server process sees every change, whichever process made it. A notification
lost with its connection is caught up on: a closed listener is reopened and the reopening is
reported as a possible change, and the feed reads ``changes`` now and then anyway.

PostgreSQL assigns positions from a sequence when a row is written, not when it commits, so
positions can become visible out of order (``ordered = False``); ``running_writers`` tells the
feed which transactions may still fill a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from ..tables import CHANGES_TABLE
from .changes import CHANNEL, ChangeReader

if TYPE_CHECKING:
    from .postgres import PostgresStore


class PostgresChangeReader(ChangeReader):
    """Notified through ``LISTEN``; reads ``changes`` and records through the store's pool."""

    ordered = False

    def __init__(self, store: PostgresStore, *, poll_interval: float) -> None:
        super().__init__(store, poll_interval=poll_interval)
        self.url = store.target.url
        self._listener: asyncpg.Connection | None = None
        self._wake = asyncio.Event()

    async def open(self) -> None:
        if self._listener is None:
            await self._listen()

    async def close(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.add_listener(CHANNEL, self._notified)
        except BaseException:
            await conn.close()
            raise
        self._listener = conn

    def _notified(self, *args: object) -> None:
        self._wake.set()

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await self.store.fetch(sql, params)

    async def wait(self, timeout: float) -> bool:
        """Wait for a notification; True also when the listener had to be reopened."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancellation that
        # ChangeFeed.stop() sends when a notification lands at that moment.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        changed = self._wake.is_set()
        self._wake.clear()
        if self._listener is None or self._listener.is_closed():
            await self.close()
            await self._listen()
            changed = True  # notifications may have been missed meanwhile
        return changed

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


__all__ = ["PostgresChangeReader"]
