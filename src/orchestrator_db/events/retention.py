"""Retention of the change log: ``changes`` grows with every write; ``prune_changes`` trims it."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..errors import ValidationError
from ..manager import CoreManager
from ..models import utc_now
from ..tables import CHANGES_TABLE
from ..validation import check_time

PRUNE_CHUNK = 50_000  # positions deleted per transaction by prune_changes


async def prune_changes(db: CoreManager, keep_last: int | None = None,
                        older_than: timedelta | datetime | str | None = None) -> int:
    """Delete old rows of the change log and return how many went.

    Args:
        keep_last: keep at least the newest ``keep_last`` changes (≥ 1).
        older_than: delete changes recorded before this: a ``timedelta`` counts back from now,
            a datetime or ISO 8601 string is the cutoff itself.

    With both, a change goes only when both say so. The newest change is always kept (on SQLite
    that keeps positions from being reused). Records are never touched; a subscriber resuming
    from a pruned position gets the changes still there. Deletes in chunks of ``PRUNE_CHUNK``
    positions, one transaction each, so writers are never held up for long.
    """
    if keep_last is None and older_than is None:
        raise ValidationError("give keep_last, older_than or both", field="keep_last")
    store = db.store
    limits: list[int] = []
    rows = await store.fetch(f"SELECT min(position) AS lo, max(position) AS hi FROM {CHANGES_TABLE}")
    lo, hi = rows[0]["lo"], rows[0]["hi"]
    if hi is None:
        return 0
    limits.append(int(hi) - 1)
    if keep_last is not None:
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
            raise ValidationError(f"keep_last must be an integer ≥ 1, got {keep_last!r}",
                                  field="keep_last")
        q = store.query()
        rows = await store.fetch(
            f"SELECT position FROM {CHANGES_TABLE} ORDER BY position DESC "
            f"LIMIT {q.p(1)} OFFSET {q.p(keep_last)}", q.params,
        )
        if not rows:
            return 0
        limits.append(int(rows[0]["position"]))
    if older_than is not None:
        if isinstance(older_than, timedelta):
            cutoff = utc_now() - older_than
        else:
            found = check_time(older_than, "older_than")
            assert found is not None
            cutoff = found
        q = store.query()
        rows = await store.fetch(
            f"SELECT max(position) AS n FROM {CHANGES_TABLE} WHERE created_at < "
            f"{q.p(store.ts(cutoff))}", q.params,
        )
        if rows[0]["n"] is None:
            return 0
        limits.append(int(rows[0]["n"]))
    upto = min(limits)
    deleted = 0
    for start in range(int(lo), upto + 1, PRUNE_CHUNK):
        q = store.query()
        deleted += await store.execute(
            f"DELETE FROM {CHANGES_TABLE} WHERE position >= {q.p(start)} "
            f"AND position <= {q.p(min(start + PRUNE_CHUNK - 1, upto))}", q.params,
        )
    return deleted


__all__ = ["PRUNE_CHUNK", "prune_changes"]
