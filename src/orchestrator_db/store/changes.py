"""Reading the change log (migration 0002) for the change feed: the part that differs by engine.

``events.ChangeFeed`` fans changes out to subscribers; a ``ChangeReader`` is how it learns that
something was committed and reads the rows: ``SQLiteChangeReader`` polls ``PRAGMA data_version``
on a read-only connection of its own, ``PostgresChangeReader`` LISTENs on a dedicated connection.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from ..tables import CHANGE_COLUMNS, CHANGES_TABLE, COLUMNS

BATCH = 500  # change rows read per query (live and replay)


class ChangeReader(abc.ABC):
    """One change feed's view of a database's change log."""

    #: Whether positions become visible in position order (one writer at a time). When False,
    #: a gap below a visible position may still fill, until the transactions that may own it end.
    ordered: bool

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect what the reader needs (its own connection, a listener)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release what ``open`` took."""

    @abc.abstractmethod
    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a short read and return public-shape rows."""

    @abc.abstractmethod
    def placeholder(self, params: list[Any], value: Any) -> str:
        """Add ``value`` to ``params`` and return its placeholder."""

    @abc.abstractmethod
    def ids_condition(self, params: list[Any], ids: Sequence[str]) -> str:
        """SQL matching rows whose id is one of ``ids``."""

    @abc.abstractmethod
    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a sign of new commits; True if there may be some."""

    @abc.abstractmethod
    async def running_writers(self) -> frozenset[int]:
        """Ids of the transactions that may still commit a change below the newest position."""

    async def max_position(self) -> int:
        """Return the newest position in the change log (0 when empty)."""
        rows = await self.fetch(f"SELECT coalesce(max(position), 0) AS n FROM {CHANGES_TABLE}")
        return int(rows[0]["n"])

    async def changes(self, after: int, upto: int | None = None, limit: int = BATCH
                      ) -> list[dict[str, Any]]:
        """Return change rows with ``after < position <= upto``, oldest first."""
        params: list[Any] = []
        sql = (f"SELECT {', '.join(CHANGE_COLUMNS)} FROM {CHANGES_TABLE} "
               f"WHERE position > {self.placeholder(params, after)}")
        if upto is not None:
            sql += f" AND position <= {self.placeholder(params, upto)}"
        sql += f" ORDER BY position LIMIT {self.placeholder(params, limit)}"
        return await self.fetch(sql, params)

    async def select(self, table: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Return the records of ``table`` with these ids (those that still exist)."""
        if not ids:
            return []
        params: list[Any] = []
        condition = self.ids_condition(params, ids)
        return await self.fetch(
            f"SELECT {', '.join(COLUMNS[table])} FROM {table} WHERE {condition}", params
        )
