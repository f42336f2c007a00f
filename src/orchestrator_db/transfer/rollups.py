"""``cost_rollups``: what pruned prompts cost, per day (migration 0003).

The table has no id (one row per day, session, agent and model): it is small, so it is copied
whole after the record tables and compared as a multiset of canonical rows.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any

from ..manager import CoreManager
from ..models import parse_ts
from ..tables import ROLLUP_COLUMNS, ROLLUP_TABLE
from .checksums import canon_time, dumps_canonical
from .errors import VerificationError
from .results import TableCopy
from .rows import Row, write

_DAY = ROLLUP_COLUMNS.index("day")
_UPDATED_AT = ROLLUP_COLUMNS.index("updated_at")


@dataclass
class Rollups:
    """Both sides of the rollup table, as canonical lines, and what the copy must add."""

    source: list[tuple[str, Row]]
    missing: list[Row]  # source rows the destination lacks
    extra: int  # destination rows that are not in the source


async def _rollup_rows(db: CoreManager) -> list[tuple[str, Row]]:
    store = db.store
    columns = [f"{store.rollup_day_expr('day')} AS day" if c == "day" else c
               for c in ROLLUP_COLUMNS]
    rows = await store.fetch(f"SELECT {', '.join(columns)} FROM {ROLLUP_TABLE}", heavy=True)
    out = []
    for row in rows:
        row["updated_at"] = canon_time(row["updated_at"])
        out.append((dumps_canonical([row[c] for c in ROLLUP_COLUMNS]), row))
    return out


async def plan_rollups(src: CoreManager, dst: CoreManager) -> Rollups:
    """Compare both sides: which source rows the destination lacks, how many it has besides."""
    source, existing = await _rollup_rows(src), await _rollup_rows(dst)
    have = Counter(line for line, _ in existing)
    missing = []
    for line, row in source:
        if have[line]:
            have[line] -= 1
        else:
            missing.append(row)
    return Rollups(source, missing, sum(have.values()))


def _params(db: CoreManager, row: Row) -> list[Any]:
    store = db.store
    values = [row[c] for c in ROLLUP_COLUMNS]
    values[_DAY] = store.day_param(date.fromisoformat(row["day"]))
    values[_UPDATED_AT] = store.ts(parse_ts(row["updated_at"]))
    return values


async def write_missing(dst: CoreManager, plan: Rollups) -> None:
    """Add the source rows the destination lacks, in one transaction."""
    await write(dst, ROLLUP_TABLE, [_params(dst, r) for r in plan.missing], merge=False,
                columns=ROLLUP_COLUMNS)


async def verify_rollups(dst: CoreManager, t: TableCopy, plan: Rollups, *, merge: bool) -> None:
    """The destination holds every source row (and, unless merging, nothing else)."""
    now = Counter(line for line, _ in await _rollup_rows(dst))
    want = Counter(line for line, _ in plan.source)
    missing = want - now
    extra = now - want
    t.destination_rows = sum(now.values())
    t.checksum = hashlib.sha256("\n".join(sorted(want.elements())).encode()).hexdigest()
    if missing or (extra and not merge):
        raise VerificationError(
            f"verification failed for {ROLLUP_TABLE}: {sum(missing.values())} source row(s) "
            f"missing, {sum(extra.values())} unexpected row(s) in the destination",
            table=ROLLUP_TABLE,
        )


__all__ = ["Rollups", "plan_rollups", "verify_rollups", "write_missing"]
