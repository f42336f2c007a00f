"""Aggregates: session summaries, cost summaries and row counts, the same numbers on both engines.

They read what migration 0005 keeps up to date in the transaction of every write: ``sessions``
(one row per session, with the time its first agent was created) gives the session list a
stable keyset order, and ``cost_days`` (the live prompts' totals per UTC day, agent and model)
answers cost questions without summing every prompt. ``cost_rollups`` (0003) holds what prune()
deleted; the two never hold the same prompt. ``cost_totals`` sums both per day, orchestrator
agent and model, for the groupings of all history that have few groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .errors import ValidationError, shown
from .manager import CoreManager
from .models import AGENT_STATUSES, MAX_NAME_CHARS, format_ts, parse_ts
from .pagination import CURSOR_ERRORS, MALFORMED_CURSOR, Page, check_limit, pack_cursor, unpack_cursor
from .store import Query, Store
from .tables import TABLES
from .validation import check_choice, check_text, check_time, check_uuid

GROUPS = ("session", "agent", "orchestrator_agent", "model", "day")
# Groupings that grow with history (one group per session or agent run) and are paged; the
# others have a group per model, orchestrator agent or day and always come whole.
PAGED_GROUPS = ("session", "agent")
WHOLE_GROUPS = ("orchestrator_agent", "model", "day")
COST_DIGITS = 9  # sums of doubles may differ in the last bits between engines; cents don't
# Tables at least this big (by the engine's estimate) report the estimate, labelled as such;
# smaller ones are counted exactly, which costs little below this size.
ESTIMATE_FROM = 100_000


def session_status(by_status: dict[str, int]) -> str:
    """One word for a session from the statuses of its agents' latest runs.

    Only the latest run of each orchestrator agent counts: a builder that failed, was retried
    and then completed leaves a completed session (with one failed attempt, counted apart).
    """
    for status in ("executing", "pending", "failed"):
        if by_status.get(status):
            return status
    if by_status.get("cancelled") and not by_status.get("completed"):
        return "cancelled"
    return "completed"


def _cost(value: Any) -> float:
    return round(float(value or 0), COST_DIGITS)


def _in(q: Query, values: Sequence[Any]) -> str:
    return ", ".join(q.p(v) for v in values)


def _text_ts(value: Any) -> str:
    return format_ts(value) if isinstance(value, datetime) else str(value)


# cursors ----------------------------------------------------------------------------------------
def encode_key_cursor(kind: str, *key: Any) -> str:
    """Return an opaque cursor holding ``kind`` and the key of the last row of a page."""
    return pack_cursor([kind, *key])


def decode_key_cursor(cursor: Any, kind: str, size: int) -> list[str]:
    """Return the key a cursor of ``kind`` holds; ValidationError if it is not one of ours."""
    try:
        value = unpack_cursor(cursor)
        if (not isinstance(value, list) or len(value) != size + 1 or value[0] != kind
                or not all(isinstance(v, str) for v in value[1:])):
            raise ValueError(value)
        key = [check_text(v, "cursor", max_chars=MAX_NAME_CHARS) for v in value[1:]]
    except (*CURSOR_ERRORS, ValidationError) as exc:
        raise ValidationError(MALFORMED_CURSOR, field="cursor") from exc
    return key


# sessions ---------------------------------------------------------------------------------------
# An agent's newest prompt event: created or completed, whichever is later. Written exactly as
# migration 0007 indexes it (ix_prompts_agent_activity), so that one backward probe of that
# index finds it; ORDER BY ... LIMIT 1 rather than max(), which SQLite 3.40 would answer by
# reading every prompt of the agent (it cannot take an expression's value from the index).
_PROMPT_ACTIVITY = "CASE WHEN p.completed_at > p.created_at THEN p.completed_at ELSE p.created_at END"
# Per status, the agent runs in it; then the statuses of the latest runs (of each orchestrator
# agent) as one bit set, all session_status() needs, and the failed runs a later run followed.
_STATUS_COUNTS = "".join(f"sum(CASE WHEN r.status = '{status}' THEN 1 ELSE 0 END) AS {status}, "
                         for status in AGENT_STATUSES)
_STATUS_BITS = {status: 1 << i for i, status in enumerate(AGENT_STATUSES)}
_LATEST_STATUSES = ("sum(DISTINCT CASE WHEN r.latest = 1 THEN CASE r.status "
                    + " ".join(f"WHEN '{s}' THEN {bit}" for s, bit in _STATUS_BITS.items())
                    + " END END) AS latest_statuses, "
                    "sum(CASE WHEN r.status = 'failed' AND r.latest > 1 THEN 1 ELSE 0 END) "
                    "AS failed_attempts, ")
# The greatest of the agents' last update, newest prompt event and newest log line (either of
# the last two may be NULL: > is then false). Written with CASE, the same on both engines.
_LAST = "CASE WHEN max(r.last_prompt) > max(r.updated_at) THEN max(r.last_prompt) ELSE max(r.updated_at) END"
_LAST_ACTIVITY = f"CASE WHEN max(r.last_log) > {_LAST} THEN max(r.last_log) ELSE {_LAST} END"


async def sessions(store: Store, session_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Summaries of the given sessions (those with at least one agent), in the given order.

    Two queries, whatever the number of sessions, each answering one row per session. The
    first reads their agents: counts by status, the statuses of each orchestrator agent's
    latest run (the greatest (created_at, id)), and the last activity, with two index probes
    per agent for its newest prompt event and log line (ix_prompts_agent_activity,
    ix_agent_logs_agent). The second reads their totals from the daily rollups. One row per
    session, not per agent: turning 500 agents' ids and times into dicts cost more than the
    probes (issue 12 item 5).
    """
    if not session_ids:
        return []
    q = store.query()
    session_rows = await store.fetch(
        f"SELECT r.session_id, count(*) AS agents, {_STATUS_COUNTS}{_LATEST_STATUSES}"
        f"min(r.created_at) AS first_activity, {_LAST_ACTIVITY} AS last_activity "
        # The window function also keeps both engines from merging this subquery into the
        # outer one, which would run the probes once per mention in _LAST_ACTIVITY.
        "FROM (SELECT a.session_id, a.status, a.created_at, a.updated_at, "
        "row_number() OVER (PARTITION BY a.session_id, a.orchestrator_agent_id "
        "ORDER BY a.created_at DESC, a.id DESC) AS latest, "
        f"(SELECT {_PROMPT_ACTIVITY} FROM prompts p WHERE p.agent_id = a.id "
        f"ORDER BY {_PROMPT_ACTIVITY} DESC LIMIT 1) AS last_prompt, "
        "(SELECT max(l.created_at) FROM agent_logs l WHERE l.agent_id = a.id) AS last_log "
        f"FROM agents a WHERE a.session_id IN ({_in(q, session_ids)})) AS r "
        "GROUP BY r.session_id", q.params, heavy=True)
    # Prompts, tokens and cost: the live prompts' daily totals plus what prune() folded away.
    q = store.query()
    sums = ("CAST(sum(prompts) AS BIGINT) AS prompts, CAST(sum(tokens_input) AS BIGINT) AS "
            "tokens_input, CAST(sum(tokens_output) AS BIGINT) AS tokens_output, "
            "sum(cost_usd) AS cost_usd")
    live = f"SELECT session_id, {sums} FROM cost_days WHERE session_id IN ({_in(q, session_ids)})"
    pruned = (f"SELECT session_id, {sums} FROM cost_rollups "
              f"WHERE session_id IN ({_in(q, session_ids)})")
    total_rows = await store.fetch(
        f"{live} GROUP BY session_id UNION ALL {pruned} GROUP BY session_id", q.params,
        heavy=True)
    out: dict[str, dict[str, Any]] = {}
    for row in session_rows:
        bits = int(row["latest_statuses"])
        out[row["session_id"]] = {
            "session_id": row["session_id"],
            "status": session_status({s: bits & bit for s, bit in _STATUS_BITS.items()}),
            "agents": int(row["agents"]),
            "agents_by_status": {status: int(row[status]) for status in AGENT_STATUSES},
            "prompts": 0, "tokens_input": 0, "tokens_output": 0, "cost_usd": 0.0,
            "first_activity": row["first_activity"], "last_activity": row["last_activity"],
            "failed_attempts": int(row["failed_attempts"]),
        }
    for row in total_rows:
        if row["session_id"] not in out:  # pragma: no cover - totals go with their agents
            continue
        summary = out[row["session_id"]]
        summary["prompts"] += int(row["prompts"] or 0)
        summary["tokens_input"] += int(row["tokens_input"] or 0)
        summary["tokens_output"] += int(row["tokens_output"] or 0)
        summary["cost_usd"] += float(row["cost_usd"] or 0)  # rounded once, below
    for summary in out.values():
        summary["cost_usd"] = _cost(summary["cost_usd"])
    return [out[s] for s in session_ids if s in out]


async def session_summary(db: CoreManager, session_id: str) -> dict[str, Any] | None:
    """Agents by status, prompts, tokens, cost and first/last activity of one session."""
    if not isinstance(session_id, str) or not session_id:
        raise ValidationError(f"session_id must be a non-empty string, got {shown(session_id)}",
                              field="session_id")
    check_text(session_id, "session_id", max_chars=MAX_NAME_CHARS)
    store = db.store
    async with store.snapshot():
        found = await sessions(store, [session_id])
    return found[0] if found else None


async def page_sessions(db: CoreManager, *, limit: int, cursor: str | None = None) -> Page:
    """One page of session summaries, the most recently started session first.

    The order is (the created_at of the first agent recorded in the session, session_id),
    newest first, read from the ``sessions`` table by index. The key never changes while the
    session has agents (migration 0008): not by activity, an agent created earlier, or its
    first agent deleted, so following ``next_cursor`` (the last row's key) neither repeats nor
    skips a session while agents keep writing; sessions started after the first page was read
    are not on later pages.
    """
    limit = check_limit(limit)
    store = db.store
    q = store.query()
    where = ""
    if cursor is not None:
        started, session_id = decode_key_cursor(cursor, "s", 2)
        try:
            started_at = parse_ts(started)
        except ValueError as exc:
            raise ValidationError(MALFORMED_CURSOR, field="cursor") from exc
        where = (f"WHERE (started_at, session_id) < ({q.p(store.ts(started_at))}, "
                 f"{q.p(session_id)}) ")
    async with store.snapshot():
        rows = await store.fetch(
            f"SELECT session_id, started_at FROM sessions {where}"
            f"ORDER BY started_at DESC, session_id DESC LIMIT {q.p(limit + 1)}",
            q.params, heavy=True)
        items = await sessions(store, [r["session_id"] for r in rows[:limit]])
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_key_cursor("s", _text_ts(last["started_at"]), last["session_id"])
    return Page(items, next_cursor)


async def list_sessions(db: CoreManager, *, limit: int, offset: int) -> list[dict[str, Any]]:
    """Session summaries, the most recently started first (``page_sessions`` without a cursor)."""
    limit = check_limit(limit)
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**62:
        raise ValidationError(f"offset must be a whole number from 0 to 2**62, got {shown(offset)}",
                              field="offset")
    store = db.store
    q = store.query()
    async with store.snapshot():
        rows = await store.fetch(
            "SELECT session_id FROM sessions ORDER BY started_at DESC, session_id DESC "
            f"LIMIT {q.p(limit)} OFFSET {q.p(offset)}",
            q.params, heavy=True,
        )
        return await sessions(store, [r["session_id"] for r in rows])


# costs ------------------------------------------------------------------------------------------
async def cost_summary(db: CoreManager, group_by: str, since: Any, until: Any
                       ) -> list[dict[str, Any]]:
    """Prompts, tokens and cost per group; groups sorted by key, a missing key last."""
    return (await page_costs(db, group_by, since, until)).items


async def page_costs(db: CoreManager, group_by: str, since: Any = None, until: Any = None, *,
                     limit: int | None = None, cursor: str | None = None) -> Page:
    """``cost_summary``, with ``limit`` groups per page when grouped by session or agent.

    The other groupings come whole (``limit`` does not cut them): one group per model,
    orchestrator agent or day.
    """
    group_by = check_choice(group_by, GROUPS, "group_by")
    start, end = check_time(since, "since"), check_time(until, "until")
    paged = limit is not None and group_by in PAGED_GROUPS
    if limit is not None:
        limit = check_limit(limit)
    after = decode_key_cursor(cursor, "c", 1)[0] if cursor is not None else None
    if after is not None and not paged:
        raise ValidationError(f"cursor only continues group_by={'|'.join(PAGED_GROUPS)} "
                              "with a limit", field="cursor")
    if after is not None and group_by == "agent":
        try:
            after = check_uuid(after, "cursor")
        except ValidationError as exc:
            raise ValidationError(MALFORMED_CURSOR, field="cursor") from exc
    store = db.store
    # Live totals and rollups in one snapshot: a prune moving cost from one to the other
    # between the two reads would otherwise count it twice (or not at all).
    async with store.snapshot():
        ranges = _Ranges(start, end)
        keys = None
        if paged:
            assert limit is not None
            keys = await _page_keys(store, group_by, ranges, after, limit + 1)
            if not keys:
                return Page([], None)
        rows = await _cost_summary(store, group_by, ranges, keys[:limit] if keys else None)
    if paged and keys is not None and limit is not None and len(keys) > limit:
        return Page(rows, encode_key_cursor("c", keys[limit - 1]))
    return Page(rows, None)


class _Ranges:
    """Which UTC days count whole (read from the daily totals) and which times in part (read
    from the prompts by their created_at index), for a [since, until) range."""

    def __init__(self, since: datetime | None, until: datetime | None) -> None:
        self.since, self.until = since, until
        first = None if since is None else _midnight_after(since)
        last = None if until is None else _midnight(until)
        self.windows: list[tuple[datetime | None, datetime | None]] = []
        if ((since is not None and first is None)  # no midnight after since (9999-12-31)
                or (first is not None and last is not None and first >= last)):
            self.days: tuple[Any, Any] | None = None  # no whole day: all from the prompts
            if since is not None and (until is None or since < until):
                self.windows.append((since, until))
            return
        self.days = (first, last)
        if since is not None and first is not None and since < first:
            self.windows.append((since, first))
        if until is not None and last is not None and last < until:
            self.windows.append((last, until))


def _midnight(value: datetime) -> datetime:
    """The UTC midnight at or before ``value``."""
    return datetime.combine(value.astimezone(UTC).date(), time(), tzinfo=UTC)


def _midnight_after(value: datetime) -> datetime | None:
    """The UTC midnight at or after ``value``; None past the last day a datetime holds."""
    day = _midnight(value)
    if day == value:
        return day
    return None if day.date() == date.max else day + timedelta(days=1)


_KEYS = {  # key and name of each grouping over cost_days/cost_rollups (r) and prompts (p)
    "session": (("r.session_id", "NULL"), ("a.session_id", "NULL")),
    "agent": (("r.agent_id", "max(a.name)"), ("p.agent_id", "max(a.name)")),
    "orchestrator_agent": (("r.orchestrator_agent_id", "max(o.name)"),
                           ("a.orchestrator_agent_id", "max(o.name)")),
    "model": (("r.model", "NULL"), ("p.model", "NULL")),
    "day": (("", "NULL"), ("", "NULL")),
}
_SUMS = ("CAST(sum({n}) AS BIGINT) AS prompts, CAST(sum({t}.tokens_input) AS BIGINT) AS "
         "tokens_input, CAST(sum({t}.tokens_output) AS BIGINT) AS tokens_output, "
         "sum({t}.cost_usd) AS cost_usd")


def _sources(store: Store, group_by: str, ranges: _Ranges
             ) -> list[tuple[str, str, str, Query]]:
    """(key expression, FROM ... WHERE ..., sums, its parameters) of each place the prompts are
    counted; a caller adds conditions (and their parameters) after the WHERE's."""
    (total_key, _), (prompt_key, _) = _KEYS[group_by]
    if group_by == "day":
        total_key, prompt_key = store.rollup_day_expr("r.day"), store.day_expr("p.created_at")
    # Only the groupings that show a name join for it (SQLite would not leave out an unused
    # LEFT JOIN: it doubles the time of a day grouping).
    joins = {"agent": " LEFT JOIN agents a ON a.id = r.agent_id",
             "orchestrator_agent": " LEFT JOIN orchestrator_agents o "
                                   "ON o.id = r.orchestrator_agent_id"}.get(group_by, "")
    if (store.keeps_totals and ranges.since is None and ranges.until is None
            and group_by in WHOLE_GROUPS):
        # All history by day, model or orchestrator agent: a few rows per day.
        return [(total_key, f"cost_totals r{joins}", _SUMS.format(n="r.prompts", t="r"),
                 store.query())]
    out = []
    if ranges.days is not None:  # the live prompts of whole days
        q = store.query()
        first, last = ranges.days
        cond = []
        if first is not None:
            cond.append(f"r.day >= {q.p(store.day_param(first.date()))}")
        if last is not None:
            cond.append(f"r.day < {q.p(store.day_param(last.date()))}")
        where = (" WHERE " + " AND ".join(cond)) if cond else ""
        out.append((total_key, f"cost_days r{joins}{where}", _SUMS.format(n="r.prompts", t="r"),
                    q))
    if ranges.windows:  # the live prompts of part days, by time
        q = store.query()
        cond = []
        for lo, hi in ranges.windows:
            parts = []
            if lo is not None:
                parts.append(f"p.created_at >= {q.p(store.ts(lo))}")
            if hi is not None:
                parts.append(f"p.created_at < {q.p(store.ts(hi))}")
            cond.append("(" + " AND ".join(parts) + ")")
        out.append((prompt_key, "prompts p JOIN agents a ON a.id = p.agent_id JOIN "
                    "orchestrator_agents o ON o.id = a.orchestrator_agent_id WHERE "
                    + " OR ".join(cond), _SUMS.format(n="1", t="p"), q))
    # Pruned prompts, by day: a rollup day counts when its midnight (UTC) falls in
    # [since, until), exact for ranges that start and end at midnight.
    q = store.query()
    cond = []
    if ranges.since is not None:
        first = _midnight_after(ranges.since)
        cond.append("1 = 0" if first is None else f"r.day >= {q.p(store.day_param(first.date()))}")
    if ranges.until is not None and (end := _midnight_after(ranges.until)) is not None:
        cond.append(f"r.day < {q.p(store.day_param(end.date()))}")
    where = (" WHERE " + " AND ".join(cond)) if cond else ""
    out.append((total_key, f"cost_rollups r{joins}{where}", _SUMS.format(n="r.prompts", t="r"),
                q))
    return out


async def _page_keys(store: Store, group_by: str, ranges: _Ranges, after: str | None,
                     size: int) -> list[str]:
    """The first ``size`` group keys after ``after`` (in text order) over every source."""
    keys: set[str] = set()
    for key, source, _, q in _sources(store, group_by, ranges):
        # Session ids are text: compared byte-wise on both engines. Agent ids are UUIDs, whose
        # order is that of their canonical text on both.
        ordered = store.text_order(key) if group_by == "session" else key
        cond = f" AND {ordered} > {q.p(after)}" if after is not None else ""
        glue = " AND" if " WHERE " in source else " WHERE"
        sql = (f"SELECT {key} AS key FROM {source}{glue} {key} IS NOT NULL{cond} "
               f"GROUP BY {key} ORDER BY {ordered} LIMIT {q.p(size)}")
        keys.update(str(r["key"]) for r in await store.fetch(sql, q.params, heavy=True))
    return sorted(keys)[:size]


async def _cost_summary(store: Store, group_by: str, ranges: _Ranges,
                        keys: Sequence[str] | None) -> list[dict[str, Any]]:
    name_of = {source: name for source, name in (_KEYS[group_by][0], _KEYS[group_by][1])}
    merged: dict[Any, dict[str, Any]] = {}
    for key, source, sums, q in _sources(store, group_by, ranges):
        name = name_of.get(key, "NULL")
        only = ""
        if keys is not None:
            glue = " AND" if " WHERE " in source else " WHERE"
            only = f"{glue} {key} IN ({_in(q, keys)})"
        rows = await store.fetch(
            f"SELECT {key} AS key, {name} AS name, {sums} FROM {source}{only} GROUP BY {key}",
            q.params, heavy=True)
        for row in rows:
            entry = merged.setdefault(row["key"], {
                "key": row["key"], "name": None, "prompts": 0, "tokens_input": 0,
                "tokens_output": 0, "cost_usd": 0.0,
            })
            if entry["name"] is None:
                entry["name"] = row["name"]
            entry["prompts"] += int(row["prompts"] or 0)
            entry["tokens_input"] += int(row["tokens_input"] or 0)
            entry["tokens_output"] += int(row["tokens_output"] or 0)
            entry["cost_usd"] += float(row["cost_usd"] or 0)
    out = list(merged.values())
    for entry in out:
        entry["cost_usd"] = _cost(entry["cost_usd"])
    out.sort(key=lambda r: (r["key"] is None, r["key"] or ""))
    return out


# counts -----------------------------------------------------------------------------------------
async def stats(db: CoreManager) -> dict[str, Any]:
    """Row counts (estimated for big tables, and labelled so), size, engine and schema version.

    ``row_estimates`` (0005) is the engine's free guess: PostgreSQL's planner statistics, the
    rowid span on SQLite. A table it puts at ``ESTIMATE_FROM`` rows or more reports the guess
    and is listed in ``estimated``; the others are counted exactly.
    """
    store = db.store
    guesses = {r["table_name"]: r["estimate"] for r in await store.fetch(
        "SELECT table_name, estimate FROM row_estimates", heavy=True)}
    counts, estimated = {}, {}
    for table in TABLES:
        guess = guesses.get(table)
        if guess is not None and int(guess) >= ESTIMATE_FROM:
            counts[table], estimated[table] = int(guess), True
            continue
        rows = await store.fetch(f"SELECT count(*) AS n FROM {table}", heavy=True)
        counts[table], estimated[table] = int(rows[0]["n"]), False
    return {
        "engine": db.dialect.value,
        "location": db.target.display(),
        "schema_version": await store.schema_version(),
        "size_bytes": await store.storage_bytes(),
        "counts": counts,
        "estimated": estimated,
    }
