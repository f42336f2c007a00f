"""``cost_rollups``: what pruned prompts cost, per day (migration 0003).

The table has no id (one row per day, session, agent and model): it is small, so it is copied
whole after the record tables and compared as a multiset of canonical rows.

A merge compares it by key instead: a key both sides hold with the same totals is the same
pruned history (an earlier copy, or both pruned alike) and is not added again. Which prompts a
rollup counts is not recorded, so where a merge could count a prompt twice — live on one side,
pruned into a rollup on the other — it is refused before anything is written (``MergeConflict``
says which agent and day), rather than doubling costs and reporting success.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any

from ..manager import CoreManager
from ..models import parse_ts
from ..tables import ROLLUP_COLUMNS, ROLLUP_TABLE
from .checksums import canon_time, dumps_canonical
from .errors import MergeConflict, VerificationError
from .results import TableCopy
from .rows import Row, write

_DAY = ROLLUP_COLUMNS.index("day")
_UPDATED_AT = ROLLUP_COLUMNS.index("updated_at")
_KEY = ("day", "session_id", "agent_id", "orchestrator_agent_id", "model")
Key = tuple[Any, ...]
Totals = tuple[int, int, int, float]
_AGENTS_PER_READ = 500


@dataclass
class Rollups:
    """Both sides of the rollup table, as canonical lines, and what the copy must add."""

    source: list[tuple[str, Row]]
    missing: list[Row]  # source rows the destination lacks
    extra: int  # destination rows that are not in the source
    merge: bool = False  # compared by key and totals (``_plan_merge``), not line by line


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


async def plan_rollups(src: CoreManager, dst: CoreManager, *, merge: bool = False) -> Rollups:
    """Compare both sides: which source rows the destination lacks, how many it has besides.

    With ``merge``, by key (``_plan_merge``); raises ``MergeConflict`` where that is unsafe.
    """
    source, existing = await _rollup_rows(src), await _rollup_rows(dst)
    if merge:
        return await _plan_merge(src, dst, source, existing)
    have = Counter(line for line, _ in existing)
    missing = []
    for line, row in source:
        if have[line]:
            have[line] -= 1
        else:
            missing.append(row)
    return Rollups(source, missing, sum(have.values()))


def _totals(rows: list[tuple[str, Row]]) -> dict[Key, Totals]:
    """Each key's totals (two rows may share a key: concurrent prunes add up)."""
    grouped: dict[Key, list[Row]] = {}
    for _, row in rows:
        grouped.setdefault(_key(row), []).append(row)
    return {key: (sum(int(r["prompts"]) for r in group),
                  sum(int(r["tokens_input"]) for r in group),
                  sum(int(r["tokens_output"]) for r in group),
                  math.fsum(float(r["cost_usd"]) for r in group))  # in any order, one result
            for key, group in grouped.items()}


async def _plan_merge(src: CoreManager, dst: CoreManager, source: list[tuple[str, Row]],
                      existing: list[tuple[str, Row]]) -> Rollups:
    ours, theirs = _totals(source), _totals(existing)
    conflicts = [(key, "both databases pruned prompts into it, to different totals")
                 for key in ours.keys() & theirs.keys() if ours[key] != theirs[key]]
    only_source = [k for k in ours if k not in theirs]
    only_destination = [k for k in theirs if k not in ours]
    if only_source or only_destination:
        agents = sorted({k[2] for k in only_source + only_destination})
        destination_prompts = await _prompt_days(dst, agents)
        # Into a destination without prompts of these agents only its own rollups can clash.
        source_prompts = (await _prompt_days(src, agents)
                          if destination_prompts or only_destination else {})
        conflicts += [
            (key, "the destination pruned prompts into it that the source still holds or "
                  "holds as new ones") for key in only_destination
            if _day_key(key) in _unmatched(source_prompts, destination_prompts)]
        conflicts += [
            (key, "the source pruned prompts into it that the destination still holds")
            for key in only_source
            if _day_key(key) in _unmatched(destination_prompts, source_prompts)]
    if conflicts:
        (day, session, agent, _, model), why = min(conflicts, key=lambda c: repr(c[0]))
        raise MergeConflict(
            f"cannot merge: {len(conflicts)} cost rollup(s) would count prompts twice, e.g. "
            f"agent {agent} (session {session!r}, model {model!r}) on {day}: {why}. A rollup "
            "does not record which prompts it counts; prune both databases with the same "
            "cutoff first, or copy into an empty database",
            table=ROLLUP_TABLE, field="merge")
    keep = set(only_source)
    missing = [row for _, row in source if _key(row) in keep]
    extra = sum(1 for _, row in existing if _key(row) not in ours)
    return Rollups(source, missing, extra, merge=True)


def _key(row: Row) -> Key:
    """A rollup row's key: day, session, agent, orchestrator agent and model."""
    return tuple(row[c] for c in _KEY)


def _day_key(key: Key) -> tuple[Any, ...]:
    """A rollup key as the prompts it counts are found by: day, agent and model."""
    return key[0], key[2], key[4]


async def _prompt_days(db: CoreManager, agents: list[str]) -> dict[str, tuple[Any, ...]]:
    """The (day, agent, model) of every prompt of these agents, by prompt id."""
    store = db.store
    out: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(agents), _AGENTS_PER_READ):
        q = store.query()
        condition = store.ids_condition(q, agents[start:start + _AGENTS_PER_READ], "agent_id")
        for row in await store.fetch(
                f"SELECT id, {store.day_expr('created_at')} AS day, agent_id, model "
                f"FROM prompts WHERE {condition}", q.params, heavy=True):
            out[row["id"]] = (row["day"], row["agent_id"], row["model"])
    return out


def _unmatched(one: dict[str, tuple[Any, ...]], other: dict[str, tuple[Any, ...]]
               ) -> set[tuple[Any, ...]]:
    """The (day, agent, model) of the prompts ``one`` holds and ``other`` lacks."""
    return {where for prompt, where in one.items() if prompt not in other}


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
    """The destination holds every source row (and, unless merging, nothing else); a merge
    compares each source key's totals."""
    rows = await _rollup_rows(dst)
    now = Counter(line for line, _ in rows)
    want = Counter(line for line, _ in plan.source)
    t.destination_rows = sum(now.values())
    t.checksum = hashlib.sha256("\n".join(sorted(want.elements())).encode()).hexdigest()
    if plan.merge:
        have = _totals(rows)
        differ = [key for key, totals in _totals(plan.source).items() if have.get(key) != totals]
        if differ:
            raise VerificationError(
                f"verification failed for {ROLLUP_TABLE}: {len(differ)} source key(s) with "
                "other totals in the destination", table=ROLLUP_TABLE)
        return
    missing = want - now
    extra = now - want
    if missing or (extra and not merge):
        raise VerificationError(
            f"verification failed for {ROLLUP_TABLE}: {sum(missing.values())} source row(s) "
            f"missing, {sum(extra.values())} unexpected row(s) in the destination",
            table=ROLLUP_TABLE,
        )


__all__ = ["Rollups", "plan_rollups", "verify_rollups", "write_missing"]
