"""The change feed behind live updates (design §6): every committed change, from any process.

Triggers (migration 0002) append one row per inserted, updated or deleted record to ``changes``;
its ``position`` orders all changes of a database, so a reader that remembers the last position
it handled can always ask for what came after (``?after=<position>``). ``ChangeFeed`` runs one
watcher per process that notices new commits cheaply and fans the events out to subscribers::

    async with DatabaseManager(url=...) as db, ChangeFeed(db) as feed:
        async for event in feed.subscribe(after=last_seen, session_id="s-1", min_level="INFO"):
            send(event.to_dict())

How commits are noticed differs by engine and lives in the store's ``ChangeReader``
(``store/sqlite_changes.py``: ``PRAGMA data_version`` on the feed's own read-only connection
every ``poll_interval``; ``store/postgres_changes.py``: the change log's newest position on a
dedicated connection, every ``poll_interval`` while changes come and less often when idle; the
triggers send no NOTIFY since migration 0006, so many writers do not wait for each other).
Either way the feed reads ``changes`` once a second too, in case a signal was lost.

An event's ``row`` is the record as ``DatabaseManager.get_*`` returns it, read back by id when the
event is delivered (one SELECT per table per batch): a replayed insert of a record updated since
shows the newer row, and ``row`` is None for a delete or a record that no longer exists.

Where positions can commit out of order (PostgreSQL), the watcher holds a change back while a
transaction that may own an earlier position still runs, so nothing is skipped for good
(``feed.py`` explains how).

Retention (``retention.py``): ``changes`` grows with every write.
``prune_changes(db, keep_last=..., older_than=...)`` deletes old change rows (the records
themselves are untouched); a client that resumes from a pruned position gets the changes that
are left. Run it from a scheduled job or after ``prune``.
"""

from __future__ import annotations

from ..store.changes import CHANNEL
from .event import ChangeEvent, event_filter
from .feed import ChangeFeed
from .retention import prune_changes

__all__ = ["CHANNEL", "ChangeEvent", "ChangeFeed", "event_filter", "prune_changes"]
