"""Reading the change log (migration 0002) for the change feed: the part that differs by engine.

``events.ChangeFeed`` fans changes out to subscribers; a ``ChangeReader`` is how it learns that
something was committed and reads the rows. Both engines poll something cheap on a connection of
the reader's own (``wait``): ``SQLiteChangeReader`` ``PRAGMA data_version`` on a read-only
connection, ``PostgresChangeReader`` the change log's head (its newest visible position, one
index probe), backing off while nothing changes. No signal is sent from inside the writers'
transactions: a NOTIFY per commit serialised concurrent committers on PostgreSQL's notification
queue lock (migration 0006 took it out of the triggers). Placeholders and id lists come from
the store (``query()``, ``ids_condition``), so the SQL below is written once for both engines.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from typing import Any

from ..tables import CHANGE_COLUMNS, CHANGES_TABLE, COLUMNS
from .base import Store
from .migrations import NOTIFY_CHANNEL

BATCH = 500  # change rows (and record ids) read per query, live and replay
# The channel the PostgreSQL triggers NOTIFYed until migration 0006 (``events.CHANNEL``); kept
# for importers, nothing is sent on it any more.
CHANNEL = NOTIFY_CHANNEL


class ChangeReader(abc.ABC):
    """One change feed's view of a database's change log.

    A reader is opened by ``ChangeFeed.start`` and closed by ``stop``; ``fetch`` and the reads
    built on it run on the feed's watcher task and on its subscribers' tasks.
    """

    #: Whether positions become visible in position order (one writer at a time). When False,
    #: a gap below a visible position may still fill, until the transactions that may own it end.
    ordered: bool

    def __init__(self, store: Store, *, poll_interval: float) -> None:
        self.store = store
        self.poll_interval = poll_interval

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect what the reader needs and start noticing commits.

        Called before the feed reads its start position, so that a commit in between is
        reported by the first ``wait`` rather than lost.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release what ``open`` took (idempotent)."""

    @abc.abstractmethod
    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a short read and return public-shape rows."""

    async def wait(self, timeout: float) -> bool:
        """Wait up to about ``timeout`` seconds for a sign of new commits; True if there may be.

        Checks (``check``) every ``interval()`` seconds, and at least once, however short the
        timeout.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await asyncio.sleep(max(self.poll_interval, min(self.interval(), deadline - loop.time())))
            if await self.check():
                return True
            if loop.time() >= deadline:
                return False

    @abc.abstractmethod
    async def check(self) -> bool:
        """Return whether something was committed since the last check (or since ``open``)."""

    def interval(self) -> float:
        """Seconds until the next check (``poll_interval``; a reader may back off when idle)."""
        return self.poll_interval

    @abc.abstractmethod
    async def running_writers(self) -> frozenset[int]:
        """Return the ids of the transactions that may still commit a change (empty if ordered)."""

    async def max_position(self) -> int:
        """Return the newest position in the change log (0 when empty)."""
        rows = await self.fetch(f"SELECT coalesce(max(position), 0) AS n FROM {CHANGES_TABLE}")
        return int(rows[0]["n"])

    async def min_position(self) -> int | None:
        """Return the oldest position still in the change log (None when it is empty)."""
        rows = await self.fetch(f"SELECT min(position) AS n FROM {CHANGES_TABLE}")
        return None if rows[0]["n"] is None else int(rows[0]["n"])

    async def changes(self, after: int, upto: int | None = None, limit: int = BATCH
                      ) -> list[dict[str, Any]]:
        """Return up to ``limit`` change rows with ``after < position <= upto``, oldest first."""
        q = self.store.query()
        sql = (f"SELECT {', '.join(CHANGE_COLUMNS)} FROM {CHANGES_TABLE} "
               f"WHERE position > {q.p(after)}")
        if upto is not None:
            sql += f" AND position <= {q.p(upto)}"
        sql += f" ORDER BY position LIMIT {q.p(limit)}"
        return await self.fetch(sql, q.params)

    async def select(self, table: str, ids: Sequence[str],
                     columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Return the records of ``table`` with these ids that still exist, in no set order.

        Args:
            table: a record table of ``tables.COLUMNS``.
            ids: record ids; read ``BATCH`` at a time.
            columns: the columns to read; all of the table's by default.
        """
        names = ", ".join(COLUMNS[table] if columns is None else columns)
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), BATCH):
            q = self.store.query()
            condition = self.store.ids_condition(q, ids[start:start + BATCH])
            found += await self.fetch(f"SELECT {names} FROM {table} WHERE {condition}", q.params)
        return found


__all__ = ["BATCH", "CHANNEL", "ChangeReader"]
