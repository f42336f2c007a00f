"""Aggregates: session summaries and cost summaries, the same numbers on both engines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any

from .errors import ValidationError, shown
from .manager import CoreManager
from .models import AGENT_STATUSES, MAX_NAME_CHARS
from .pagination import check_limit
from .store import Query, Store
from .validation import check_choice, check_text, check_time

GROUPS = ("session", "agent", "orchestrator_agent", "model", "day")
COST_DIGITS = 9  # sums of doubles may differ in the last bits between engines; cents don't


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


def _in(q: Query, values: Sequence[str]) -> str:
    return ", ".join(q.p(v) for v in values)


async def sessions(store: Store, session_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Summaries of the given sessions (those with at least one agent), in the given order."""
    if not session_ids:
        return []
    async def per_session(sql: str, column: str, *also: str) -> list[dict[str, Any]]:
        # `sql` ends with "WHERE": then the sessions asked for, grouped by session (and `also`).
        q = store.query()
        return await store.fetch(
            f"{sql} {column} IN ({_in(q, session_ids)}) GROUP BY {', '.join((column, *also))}",
            q.params, heavy=True)

    agent_rows = await per_session(
        "SELECT session_id, status, count(*) AS n, min(created_at) AS first_at, "
        "max(updated_at) AS last_at FROM agents WHERE", "session_id", "status")
    prompt_rows = await per_session(
        "SELECT a.session_id, count(*) AS prompts, "
        "CAST(sum(p.tokens_input) AS BIGINT) AS tokens_input, "
        "CAST(sum(p.tokens_output) AS BIGINT) AS tokens_output, sum(p.cost_usd) AS cost_usd, "
        "max(p.created_at) AS last_created, max(p.completed_at) AS last_completed "
        "FROM prompts p JOIN agents a ON a.id = p.agent_id WHERE", "a.session_id")
    # Prompts removed by prune() still count, through their daily rollups.
    rollup_rows = await per_session(
        "SELECT session_id, CAST(sum(prompts) AS BIGINT) AS prompts, "
        "CAST(sum(tokens_input) AS BIGINT) AS tokens_input, "
        "CAST(sum(tokens_output) AS BIGINT) AS tokens_output, sum(cost_usd) AS cost_usd "
        "FROM cost_rollups WHERE", "session_id")
    log_rows = await per_session(
        "SELECT a.session_id, max(l.created_at) AS last_log "
        "FROM agent_logs l JOIN agents a ON a.id = l.agent_id WHERE", "a.session_id")
    # Each run marked latest (1) or not (0) among the runs of its orchestrator agent.
    q = store.query()
    run_rows = await store.fetch(
        "SELECT session_id, status, latest, count(*) AS n FROM (SELECT session_id, status, "
        "CASE WHEN row_number() OVER (PARTITION BY session_id, orchestrator_agent_id "
        "ORDER BY created_at DESC, id DESC) = 1 THEN 1 ELSE 0 END AS latest FROM agents "
        f"WHERE session_id IN ({_in(q, session_ids)})) AS runs "
        "GROUP BY session_id, status, latest", q.params, heavy=True)
    out: dict[str, dict[str, Any]] = {}
    for row in agent_rows:
        summary = out.setdefault(row["session_id"], {
            "session_id": row["session_id"], "status": None, "agents": 0,
            "agents_by_status": dict.fromkeys(AGENT_STATUSES, 0), "prompts": 0,
            "tokens_input": 0, "tokens_output": 0, "cost_usd": 0.0,
            "first_activity": row["first_at"], "last_activity": row["last_at"],
            "failed_attempts": 0,
        })
        summary["agents"] += int(row["n"])
        summary["agents_by_status"][row["status"]] = int(row["n"])
        summary["first_activity"] = min(summary["first_activity"], row["first_at"])
        summary["last_activity"] = max(summary["last_activity"], row["last_at"])
    for row in prompt_rows:
        summary = out[row["session_id"]]
        summary["prompts"] = int(row["prompts"])
        summary["tokens_input"] = int(row["tokens_input"] or 0)
        summary["tokens_output"] = int(row["tokens_output"] or 0)
        summary["cost_usd"] = float(row["cost_usd"] or 0)  # rounded once, below
        for key in ("last_created", "last_completed"):
            if row[key] is not None:
                summary["last_activity"] = max(summary["last_activity"], row[key])
    for row in log_rows:
        summary = out[row["session_id"]]
        if row["last_log"] is not None:
            summary["last_activity"] = max(summary["last_activity"], row["last_log"])
    for row in rollup_rows:
        if row["session_id"] not in out:  # pragma: no cover - rollups go with their agents
            continue
        summary = out[row["session_id"]]
        summary["prompts"] += int(row["prompts"] or 0)
        summary["tokens_input"] += int(row["tokens_input"] or 0)
        summary["tokens_output"] += int(row["tokens_output"] or 0)
        summary["cost_usd"] += float(row["cost_usd"] or 0)
    latest: dict[str, dict[str, int]] = {}
    for row in run_rows:
        if int(row["latest"]):
            by_status = latest.setdefault(row["session_id"], {})
            by_status[row["status"]] = by_status.get(row["status"], 0) + int(row["n"])
        elif row["status"] == "failed":
            out[row["session_id"]]["failed_attempts"] += int(row["n"])
    for summary in out.values():
        summary["cost_usd"] = _cost(summary["cost_usd"])
        summary["status"] = session_status(latest.get(summary["session_id"], {}))
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


async def list_sessions(db: CoreManager, *, limit: int, offset: int) -> list[dict[str, Any]]:
    """Session summaries, most recently updated first."""
    limit = check_limit(limit)
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**62:
        raise ValidationError(f"offset must be a whole number from 0 to 2**62, got {shown(offset)}",
                              field="offset")
    store = db.store
    q = store.query()
    async with store.snapshot():
        rows = await store.fetch(
            "SELECT session_id FROM agents GROUP BY session_id "
            f"ORDER BY max(updated_at) DESC, {store.text_order('session_id')} "
            f"LIMIT {q.p(limit)} OFFSET {q.p(offset)}",
            q.params, heavy=True,
        )
        return await sessions(store, [r["session_id"] for r in rows])


async def cost_summary(db: CoreManager, group_by: str, since: Any, until: Any
                       ) -> list[dict[str, Any]]:
    """Prompts, tokens and cost per group; groups sorted by key, a missing key last."""
    group_by = check_choice(group_by, GROUPS, "group_by")
    start, end = check_time(since, "since"), check_time(until, "until")
    store = db.store
    # Prompts and rollups in one snapshot: a prune moving cost from one to the other between
    # the two reads would otherwise count it twice (or not at all).
    async with store.snapshot():
        return await _cost_summary(store, group_by, start, end)


async def _cost_summary(store: Store, group_by: str, since: datetime | None,
                        until: datetime | None) -> list[dict[str, Any]]:
    key, name = {
        "session": ("a.session_id", "NULL"),
        "agent": ("p.agent_id", "max(a.name)"),
        "orchestrator_agent": ("a.orchestrator_agent_id", "max(o.name)"),
        "model": ("p.model", "NULL"),
        "day": (store.day_expr("p.created_at"), "NULL"),
    }[group_by]
    q = store.query()
    conditions = []
    if since is not None:
        conditions.append(f"p.created_at >= {q.p(store.ts(since))}")
    if until is not None:
        conditions.append(f"p.created_at < {q.p(store.ts(until))}")
    where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
    rows = await store.fetch(
        f"SELECT {key} AS key, {name} AS name, count(*) AS prompts, "
        "CAST(sum(p.tokens_input) AS BIGINT) AS tokens_input, "
        "CAST(sum(p.tokens_output) AS BIGINT) AS tokens_output, sum(p.cost_usd) AS cost_usd "
        "FROM prompts p JOIN agents a ON a.id = p.agent_id "
        f"JOIN orchestrator_agents o ON o.id = a.orchestrator_agent_id{where} GROUP BY {key}",
        q.params, heavy=True,
    )
    merged: dict[Any, dict[str, Any]] = {}
    for row in rows + await _rollup_costs(store, group_by, since, until):
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


async def _rollup_costs(store: Store, group_by: str, since: datetime | None,
                        until: datetime | None) -> list[dict[str, Any]]:
    """The cost_summary rows of pruned prompts (maintenance.prune folds them into rollups).

    Rollups know the day, not the time: with ``since``/``until``, a rollup day counts when its
    midnight (UTC) falls in [since, until), exact for ranges that start and end at midnight.
    """
    key, name = {
        "session": ("r.session_id", "NULL"),
        "agent": ("r.agent_id", "max(a.name)"),
        "orchestrator_agent": ("r.orchestrator_agent_id", "max(o.name)"),
        "model": ("r.model", "NULL"),
        "day": (store.rollup_day_expr("r.day"), "NULL"),
    }[group_by]
    q = store.query()
    conditions = []
    if since is not None:
        first = since.date() if since.time() == time() else since.date() + timedelta(days=1)
        conditions.append(f"r.day >= {q.p(store.day_param(first))}")
    if until is not None:
        end = until.date() if until.time() == time() else until.date() + timedelta(days=1)
        conditions.append(f"r.day < {q.p(store.day_param(end))}")
    where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
    return await store.fetch(
        f"SELECT {key} AS key, {name} AS name, CAST(sum(r.prompts) AS BIGINT) AS prompts, "
        "CAST(sum(r.tokens_input) AS BIGINT) AS tokens_input, "
        "CAST(sum(r.tokens_output) AS BIGINT) AS tokens_output, sum(r.cost_usd) AS cost_usd "
        "FROM cost_rollups r LEFT JOIN agents a ON a.id = r.agent_id "
        f"LEFT JOIN orchestrator_agents o ON o.id = r.orchestrator_agent_id{where} "
        f"GROUP BY {key}",
        q.params, heavy=True,
    )
