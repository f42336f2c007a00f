"""A write inside the caller's PostgreSQL transaction runs in a savepoint of its own.

A statement that fails (a missing parent, a duplicate name) then takes back only what it did,
as on SQLite, and the transaction goes on: the caller can catch the error and carry on
(get-or-create), and the error can be explained by a lookup. Without it PostgreSQL aborts the
whole transaction: every later statement, and the commit, fails.

A savepoint per write cost two round trips, SAVEPOINT before and RELEASE after. The release
is put off instead: a level's last write keeps its savepoint open, and the next write of that
level releases it and opens its own in one round trip (``RELEASE ...; SAVEPOINT ...``). A
savepoint left open ends with the level (its commit, RELEASE or rollback takes it along).

Every level uses one name. RELEASE and ROLLBACK TO find the newest savepoint of a name, which
is always the current level's: a nested level opens its savepoint after the enclosing level's
statement savepoint, holds the enclosing level for its whole block, and its end (RELEASE or
ROLLBACK TO its own savepoint, then RELEASE) removes its statement savepoints with it.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

from .base import TxState
from .postgres_driver import DRIVER_ERRORS

T = TypeVar("T")

_NAME = "orchestrator_db_statement"
# The levels whose last write's savepoint is still open (a level is dropped with its block).
_open: weakref.WeakSet[TxState] = weakref.WeakSet()


async def in_savepoint(tx: TxState, op: Callable[[Any], Awaitable[T]]) -> T:
    """Run the write ``op`` on ``tx``'s connection in a savepoint of its own (the caller holds
    ``tx.lock``, so the level's writes come one at a time)."""
    conn = tx.conn
    if tx in _open:
        await conn.execute(f"RELEASE SAVEPOINT {_NAME}; SAVEPOINT {_NAME}")
    else:
        await conn.execute(f"SAVEPOINT {_NAME}")
        _open.add(tx)
    try:
        return await op(conn)
    except BaseException:
        # Take back this write alone; the savepoint stays for the level's next write. Should
        # the connection be gone, the write's own error is the one to raise.
        with suppress(*DRIVER_ERRORS):
            await conn.execute(f"ROLLBACK TO SAVEPOINT {_NAME}")
        raise


__all__ = ["in_savepoint"]
