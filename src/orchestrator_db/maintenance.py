"""Keeping the database tidy: retention (prune), export and import (design §4, §7).

Pruning never loses money: before prompts are deleted, their tokens and cost are folded into
``cost_rollups`` (one row per UTC day, session, agent, orchestrator agent and model), which
``cost_summary`` and ``session_summary`` add to the live prompts' totals. The delete takes the
prompts out of those live totals (``cost_days``, kept by triggers, migration 0005) in the same
transaction, so each prompt is counted once, live or pruned. Every prune batch is its own
short transaction, so other writers (other processes too) only ever wait for one batch.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import os
import re
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from .config import setting
from .errors import ValidationError, shown
from .events import prune_changes
from .manager import CoreManager
from .models import CREATE_MODELS, TimeRangeError, utc_now
from .store import Store
from .tables import ADDED_COLUMNS, COLUMNS, JSON_FIELDS, NOT_NULL, TIME_FIELDS, UUID_FIELDS
from .validation import check_choice, check_time, check_uuid, validate

# "changes" is the change feed's log (events.py); it goes last, because pruning the others adds
# a change row for every deleted record.
PRUNABLE_TABLES = ("agent_logs", "system_logs", "prompts", "changes")
DEFAULT_BATCH_SIZE = 5000
RETENTION_ENV = "ORCHESTRATOR_RETENTION_DAYS"
MAX_RETENTION_DAYS = 36_500  # a hundred years; more is a typo, and overflows dates
EXPORT_FORMATS = ("jsonl", "csv")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class TextOut(Protocol):
    """Where ``export`` writes: anything with ``write(str)``."""

    def write(self, text: str, /) -> Any: ...


# prune -------------------------------------------------------------------------------------------
def cutoff_from(older_than: Any, now: datetime | None = None) -> datetime:
    """Turn ``older_than`` (timedelta, datetime, ISO string, or "30d"/"12h"/"15m") into a time."""
    now = now or utc_now()
    if isinstance(older_than, str) and (match := _DURATION.match(older_than)):
        try:
            older_than = timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
        except OverflowError:
            raise ValidationError(f"older_than {shown(older_than)} reaches back before year 1",
                                  field="older_than") from None
    if isinstance(older_than, timedelta):
        if older_than < timedelta(0):
            raise ValidationError("older_than must not be negative", field="older_than")
        try:
            return now - older_than
        except OverflowError:
            raise ValidationError(f"older_than ({older_than.days:,} days) reaches back before "
                                  "year 1", field="older_than") from None
    if isinstance(older_than, datetime | str):
        try:
            parsed = check_time(older_than, "older_than")
        except ValidationError as exc:
            if isinstance(exc.__cause__, TimeRangeError):  # well-formed: say what is wrong
                raise
            raise ValidationError(
                "older_than must be a timedelta, a datetime, an ISO 8601 string or a duration "
                f"such as '30d', '12h', '15m'; got {shown(older_than)}", field="older_than",
            ) from exc
        assert parsed is not None
        return parsed
    raise ValidationError(
        f"older_than must be a timedelta, a datetime, an ISO 8601 string or a duration such as "
        f"'30d'; got {shown(older_than)}", field="older_than",
    )


async def prune(db: CoreManager, older_than: Any, *,
                tables: Sequence[str] = PRUNABLE_TABLES, dry_run: bool = False,
                batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, int]:
    """Delete rows created before the cutoff; return how many per table (or would, if dry).

    Prompts' tokens and cost are folded into the daily rollups in the same transaction that
    deletes them.
    """
    if isinstance(tables, str):
        tables = (tables,)
    for table in tables:
        check_choice(table, PRUNABLE_TABLES, "tables")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValidationError(f"batch_size must be a whole number ≥ 1, got {shown(batch_size)}",
                              field="batch_size")
    cutoff = cutoff_from(older_than)
    store = db.store
    counts: dict[str, int] = {}
    for table in sorted(dict.fromkeys(tables), key=PRUNABLE_TABLES.index):
        if table == "changes":
            counts[table] = await _prune_changes(db, cutoff, dry_run)
            continue
        if dry_run:
            q = store.query()
            rows = await store.fetch(
                f"SELECT count(*) AS n FROM {table} WHERE created_at < {q.p(store.ts(cutoff))}",
                q.params, heavy=True,
            )
            counts[table] = int(rows[0]["n"])
            continue
        total = 0
        while True:
            if table == "prompts":
                n = await _prune_prompts_batch(store, cutoff, batch_size)
            else:
                n = await _prune_batch(store, table, cutoff, batch_size)
            total += n
            if n < batch_size:
                break
            await asyncio.sleep(0)  # let waiting writers take the lock between batches
        counts[table] = total
    return counts


async def _prune_changes(db: CoreManager, cutoff: datetime, dry_run: bool) -> int:
    if not dry_run:
        return await prune_changes(db, older_than=cutoff)
    store = db.store
    q = store.query()
    rows = await store.fetch(
        f"SELECT count(*) AS n FROM changes WHERE created_at < {q.p(store.ts(cutoff))}",
        q.params, heavy=True,
    )
    return int(rows[0]["n"])


async def _prune_batch(store: Store, table: str, cutoff: datetime, batch_size: int) -> int:
    async with store.transaction():
        q = store.query()
        rows = await store.fetch(
            f"SELECT id FROM {table} WHERE created_at < {q.p(store.ts(cutoff))} "
            f"ORDER BY created_at, id LIMIT {q.p(batch_size)}",
            q.params, heavy=True,
        )
        return await store.delete_ids(table, [r["id"] for r in rows])


async def _prune_prompts_batch(store: Store, cutoff: datetime, batch_size: int) -> int:
    async with store.transaction():
        q = store.query()
        rows = await store.fetch(
            f"SELECT p.id, {store.day_expr('p.created_at')} AS day, a.session_id, p.agent_id, "
            "a.orchestrator_agent_id, p.model, p.tokens_input, p.tokens_output, p.cost_usd "
            "FROM prompts p JOIN agents a ON a.id = p.agent_id "
            f"WHERE p.created_at < {q.p(store.ts(cutoff))} "
            f"ORDER BY p.created_at, p.id LIMIT {q.p(batch_size)}{store.lock_rows_clause('p')}",
            q.params, heavy=True,
        )
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for r in rows:
            key = (r["day"], r["session_id"], r["agent_id"], r["orchestrator_agent_id"],
                   r["model"])
            acc = groups.setdefault(key, [0, 0, 0, []])
            acc[0] += 1
            acc[1] += int(r["tokens_input"])
            acc[2] += int(r["tokens_output"])
            acc[3].append(float(r["cost_usd"]))
        now = store.ts(utc_now())
        for (day, session_id, agent_id, oa_id, model), (n, t_in, t_out, costs) in groups.items():
            cost = math.fsum(costs)  # correctly rounded, whatever the rows' order
            day_value = store.day_param(date.fromisoformat(day))
            q = store.query()
            changed = await store.execute(
                f"UPDATE cost_rollups SET prompts = prompts + {q.p(n)}, "
                f"tokens_input = tokens_input + {q.p(t_in)}, "
                f"tokens_output = tokens_output + {q.p(t_out)}, "
                f"cost_usd = cost_usd + {q.p(cost)}, updated_at = {q.p(now)} "
                f"WHERE day = {q.p(day_value)} AND session_id = {q.p(session_id)} "
                f"AND agent_id = {q.p(agent_id)} AND orchestrator_agent_id = {q.p(oa_id)} "
                f"AND model {store.null_safe_equals()} {q.p(model)}",
                q.params,
            )
            if not changed:
                q = store.query()
                await store.execute(
                    "INSERT INTO cost_rollups (day, session_id, agent_id, orchestrator_agent_id, "
                    "model, prompts, tokens_input, tokens_output, cost_usd, updated_at) VALUES ("
                    + ", ".join(q.p(v) for v in (day_value, session_id, agent_id, oa_id, model,
                                                 n, t_in, t_out, cost, now)) + ")",
                    q.params,
                )
        return await store.delete_ids("prompts", [r["id"] for r in rows])


async def apply_retention_policy(db: CoreManager, *, days: Any = None) -> dict[str, int]:
    """Prune what is older than ``ORCHESTRATOR_RETENTION_DAYS`` days (nothing when unset/0).

    Meant to be called periodically (e.g. hourly) by a long-running service.
    """
    value = retention_days(days)
    if value is None:
        return {}
    return await prune(db, timedelta(days=value))


def retention_days(days: Any = None) -> float | None:
    """Return the retention period in days (``days``, else ``ORCHESTRATOR_RETENTION_DAYS``).

    None when unset or 0. A service checks this at startup, so a bad setting stops it with one
    clear line instead of silently killing its retention task later.
    """
    raw = days if days is not None else (setting(RETENTION_ENV) or "").strip()
    if raw in ("", None):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{RETENTION_ENV} must be a number of days, got {shown(raw)}",
                              field=RETENTION_ENV) from exc
    if not 0 <= value <= MAX_RETENTION_DAYS:  # also refuses nan and inf
        raise ValidationError(
            f"{RETENTION_ENV} must be a number of days from 0 to {MAX_RETENTION_DAYS:,}, "
            f"got {shown(raw)}", field=RETENTION_ENV,
        )
    return value or None


# backup / restore --------------------------------------------------------------------------------
async def backup(db: CoreManager, dest: str | os.PathLike[str]) -> Path:
    """Write a consistent snapshot of a SQLite database to the new file ``dest``; return it.

    Safe while writers keep going (SQLite's online backup): the snapshot holds every row
    committed before it started and passes ``PRAGMA integrity_check``. Copying the database
    file with ``cp`` is not safe: rows still in its ``-wal`` file are missing from the copy.
    """
    path = Path(dest)
    await db.store.backup(path)
    return path


async def restore(db: CoreManager, src: str | os.PathLike[str], *, force: bool = False) -> None:
    """Replace the database's contents with the snapshot ``src`` (written by ``backup``).

    Refuses a database that holds records unless ``force``; brings the restored schema up to
    date afterwards (a backup from an older version is migrated).
    """
    if not force:
        counts = (await db.stats())["counts"]
        if any(counts.values()):
            raise ValidationError(
                f"the database holds {sum(counts.values()):,} records; restoring replaces them "
                "all: pass force=True (CLI: --force) to do it anyway", field="force")
    await db.store.restore(Path(src))
    await db.close()
    await db.connect()


# export / import ---------------------------------------------------------------------------------
_EXPORT_FILTERS = {
    "orchestrator_agents": frozenset(),
    "agents": frozenset({"session_id", "since", "until"}),
    "prompts": frozenset({"session_id", "since", "until"}),
    "agent_logs": frozenset({"session_id", "since", "until"}),
    "system_logs": frozenset({"since", "until"}),
}


async def export(db: CoreManager, table: str, out: TextOut, *, format: str = "jsonl",
                 session_id: str | None = None, since: Any = None, until: Any = None) -> int:
    """Stream a table's rows (oldest first) to ``out`` as JSON Lines or CSV; return the count.

    Pages by keyset, so memory stays constant however many rows there are. In CSV, JSON fields
    are JSON text and NULL is an empty field.
    """
    table = check_choice(table, COLUMNS, "table")
    format = check_choice(format, EXPORT_FORMATS, "format")
    filters = {k: v for k, v in (("session_id", session_id), ("since", since),
                                 ("until", until)) if v is not None}
    for name in filters:
        if name not in _EXPORT_FILTERS[table]:
            raise ValidationError(f"{table} cannot be filtered by {name}", field=name)
    rows = getattr(db, f"iter_{table}")(**filters)
    columns = COLUMNS[table]
    count = 0
    if format == "jsonl":
        dumps = json.dumps
        async for row in rows:
            out.write(dumps(row, ensure_ascii=False) + "\n")
            count += 1
    else:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        async for row in rows:
            writer.writerow([_csv_value(c, row[c]) for c in columns])
            count += 1
    return count


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP: CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(column: str, value: Any) -> Any:
    if value is None:
        return ""
    if column in JSON_FIELDS:
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value  # shown as text; the JSON Lines export keeps the value as it is
    return value


async def import_rows(db: CoreManager, table: str,
                      rows: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]], *,
                      batch_size: int = 1000) -> int:
    """Insert exported rows as they are (ids and timestamps kept), in batches; return the count.

    Each row must have every column of the table (as ``export`` writes them). Import parents
    first: orchestrator_agents, agents, then prompts and logs.
    """
    table = check_choice(table, COLUMNS, "table")
    columns = COLUMNS[table]
    batch: list[dict[str, Any]] = []
    count = 0

    async def flush() -> None:
        nonlocal count
        if batch:
            await db.insert_records(table, batch)
            count += len(batch)
            batch.clear()

    index = 0
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            batch.append(_import_value(table, columns, row, index))
            index += 1
            if len(batch) >= batch_size:
                await flush()
    else:
        for row in rows:
            batch.append(_import_value(table, columns, row, index))
            index += 1
            if len(batch) >= batch_size:
                await flush()
    await flush()
    return count


def _import_value(table: str, columns: tuple[str, ...], row: Mapping[str, Any], index: int
                  ) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise ValidationError(f"row {index} must be a mapping, got {type(row).__name__}")
    unknown = {str(k) for k in row} - set(columns)
    if unknown:
        raise ValidationError(f"row {index}: unknown column(s) {sorted(unknown)} for {table}",
                              field=sorted(unknown)[0])
    # Columns a later schema added are optional, so an export from an older version imports.
    missing = [c for c in columns if c not in row and c not in ADDED_COLUMNS.get(table, ())]
    if missing:
        raise ValidationError(f"row {index}: missing column(s) {missing} for {table}",
                              field=missing[0])
    row = {**dict.fromkeys(ADDED_COLUMNS.get(table, ())), **row}
    # The same checks as every other write path: the table's payload model for its fields
    # (text without NUL or lone surrogates, whole token counts, finite costs, JSON), then ids
    # and timestamps.
    model = CREATE_MODELS[table]
    try:
        data = validate(model, {k: v for k, v in row.items() if k in model.model_fields})
    except ValidationError as exc:
        raise ValidationError(f"row {index}: {exc.message}", field=exc.field) from exc
    value = {**row, **{k: getattr(data, k) for k in data.model_fields_set
                       if k not in UUID_FIELDS and k not in TIME_FIELDS}}
    for column in columns:
        if column in UUID_FIELDS and value[column] is not None:
            value[column] = check_uuid(value[column], column)
        elif column in TIME_FIELDS:
            value[column] = check_time(value[column], column, stored=True)
    for column in NOT_NULL[table]:
        if value[column] is None:
            raise ValidationError(f"row {index}: {column} must not be null", field=column)
    return value
