"""The change log on SQLite: a read-only connection of the feed's own, polled for commits.

``PRAGMA data_version`` changes only when another connection committed, so an idle database
costs one cheap PRAGMA per ``poll_interval`` (50 ms by default), and the commits of this
process's own store count too, since they come from its connection, not this one. SQLite has one
writer at a time, so positions always commit in order: no gap ever waits for a writer.

``insert_recorded`` is the writers' side: a large insert into a change-feed table records its
changes in one statement instead of one trigger run per row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import NotConnectedError
from .changes import ChangeReader
from .migrations import sqlite_inserted_changes_sql
from .sqlite_batch import insert_rows
from .sqlite_connection import rows_of, setup_connection, translate_error

if TYPE_CHECKING:
    from .sqlite import SQLiteStore

# A WAL reader waits only while another connection recovers or resets the WAL. Reads run on the
# event loop's thread (below), so this also bounds how long such a wait can hold up the loop.
READ_BUSY_TIMEOUT_MS = 5000
# From this many rows an insert records its changes in one INSERT ... SELECT (insert_recorded).
RECORDED_MIN_ROWS = 100
_LAST_ROWID = 2**63 - 1  # past it SQLite picks new rowids at random: no range to select


class SQLiteChangeReader(ChangeReader):
    """Reads ``changes`` and records through a read-only connection; polls ``data_version``."""

    ordered = True

    def __init__(self, store: SQLiteStore, *, poll_interval: float) -> None:
        super().__init__(store, poll_interval=poll_interval)
        self.path = store.path
        self._conn: sqlite3.Connection | None = None
        self._version = 0  # data_version last seen

    async def open(self) -> None:
        if self._conn is not None:
            return
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise translate_error(exc, READ_BUSY_TIMEOUT_MS) from exc
        try:
            setup_connection(conn, READ_BUSY_TIMEOUT_MS)
            # The feed only reads; a write through this connection would be a bug.
            conn.execute("PRAGMA query_only = ON")
            self._version = _data_version(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise translate_error(exc, READ_BUSY_TIMEOUT_MS) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise NotConnectedError("the change feed is stopped; call `await feed.start()`")
        return self._conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        conn = self._connection()
        # Short WAL reads never wait for writers: run them on the loop, no thread hop.
        try:
            return rows_of(conn.execute(sql, params))
        except sqlite3.Error as exc:
            raise translate_error(exc, READ_BUSY_TIMEOUT_MS) from exc

    async def check(self) -> bool:
        """Return whether ``data_version`` changed: another connection committed."""
        try:
            current = _data_version(self._connection())
        except sqlite3.Error as exc:
            raise translate_error(exc, READ_BUSY_TIMEOUT_MS) from exc
        changed, self._version = current != self._version, current
        return changed

    async def running_writers(self) -> frozenset[int]:
        return frozenset()  # one writer at a time: positions commit in order


def insert_recorded(conn: sqlite3.Connection, *, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]], skip_existing: bool = False) -> None:
    """Insert ``rows`` into a change-feed table (``insert_rows``) and record their changes at
    once.

    On SQLite the mere presence of a row trigger doubles what each inserted row costs, so for a
    large insert the table's insert trigger is dropped, the rows are inserted, their change rows
    are written by one INSERT ... SELECT over the new rowids (the rows, values and order the
    trigger would have written) and the trigger is re-created from its own text, all inside one
    savepoint: SQLite's DDL is transactional and this connection holds the write lock, so no
    other connection ever sees the table without its trigger, and an error undoes all of it.
    """
    record = sqlite_inserted_changes_sql(table)  # and `table` is a change-feed table's name
    trigger = f"changes_{table}_insert"
    found = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                         (trigger,)).fetchone()
    (before,) = conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()
    if found is None or before >= _LAST_ROWID:  # no feed on this table, or no rowid range
        insert_rows(conn, table, columns, rows, skip_existing=skip_existing)
        return
    conn.execute("SAVEPOINT orchestrator_db_recorded")
    try:
        conn.execute(f"DROP TRIGGER {trigger}")
        insert_rows(conn, table, columns, rows, skip_existing=skip_existing)
        conn.execute(record, (before,))
        conn.execute(found[0])
    except BaseException:
        conn.execute("ROLLBACK TO orchestrator_db_recorded")
        conn.execute("RELEASE orchestrator_db_recorded")
        raise
    conn.execute("RELEASE orchestrator_db_recorded")


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


__all__ = ["READ_BUSY_TIMEOUT_MS", "RECORDED_MIN_ROWS", "SQLiteChangeReader", "insert_recorded"]
