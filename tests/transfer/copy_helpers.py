"""Helpers of the copy tests: populate a database with every kind of row, read it all back."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from otlphelpers import CHAT, PROTOBUF, agent_attrs, new_span, new_trace, span, traces

from orchestrator_db import DatabaseManager
from orchestrator_db.models import utc_now
from orchestrator_db.otlp import OtlpReceiver
from orchestrator_db.tables import OTLP_SPAN_COLUMNS, OTLP_SPANS_TABLE
from orchestrator_db.transfer import COPY_TABLES, ROLLUP_COLUMNS

ITERATORS = {
    "orchestrator_agents": "iter_orchestrator_agents",
    "agents": "iter_agents",
    "prompts": "iter_prompts",
    "agent_logs": "iter_agent_logs",
    "system_logs": "iter_system_logs",
}


async def populate(db: DatabaseManager, *, logs: int = 120) -> None:
    """Every table, JSON details of every shape, unicode, NULLs, explicit old timestamps."""
    planner = await db.create_orchestrator_agent(
        "planner ✓", "Plans the work — ünïcode, emoji 🚀, CJK 計画",
        agent_type="llm", capabilities="plan,estimate", default_model="opus",
        metadata={"nested": {"list": [1, 2.5, None, True, "x"]}, "ключ": "значение"},
    )
    bare = await db.create_orchestrator_agent("bare")  # every optional column NULL
    a1 = await db.create_agent(planner, "session-α", name="first", model="opus",
                               metadata={"attempt": 1})
    a2 = await db.create_agent(bare, "session-β")
    await db.update_agent_status(a1, "executing")
    await db.update_agent_status(a1, "completed")
    # A prompt pruned away: its tokens and cost live on in cost_rollups.
    old = await db.create_prompt(a1, "an old prompt", model="haiku")
    await db.complete_prompt(old, "done", tokens_input=7, tokens_output=3, cost_usd=0.5)
    cutoff = utc_now()
    p1 = await db.create_prompt(a1, "Plan the feature\nwith two lines and a tab\t", model="opus")
    await db.complete_prompt(p1, "1. do it 🙂", tokens_input=1200, tokens_output=300,
                             cost_usd=0.021)
    await db.create_prompt(a2, "never answered")  # response, model, completed_at NULL
    await db.create_agent_logs([
        {"agent_id": a1 if i % 3 else a2, "message": f"line {i} — “quoted” ✓",
         "log_level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")[i % 5],
         "log_type": "step_start" if i % 2 else "event",
         "details": None if i % 4 == 0 else {"i": i, "ratio": i / 7, "tags": ["a", "ß"]}
         if i % 4 == 1 else [i, "list", {"deep": {"er": i}}] if i % 4 == 2 else "plain",
         "created_at": f"2026-01-01T00:00:{i % 60:02d}.{i:06d}+00:00" if i < 10 else None}
        for i in range(logs)
    ])
    await db.create_system_log("started", source="orchestrator", details={"pid": 1})
    await db.create_system_log("no source, no details")
    assert (await db.prune(cutoff, tables=("prompts",)))["prompts"] == 1
    await send_spans(db, ORPHAN_TRACE)


# A trace received over OpenTelemetry (its otlp_spans rows): an agent run "lead" with a chat
# span, and a sub-agent "researcher" whose parent span (a handoff, ORPHAN_PARENT) has not arrived.
ORPHAN_TRACE, ORPHAN_PARENT, LEAD = new_trace(), new_span(), new_span()


async def send_spans(db: DatabaseManager, trace: bytes, *, parent_only: bool = False) -> None:
    """Send the populated trace's spans (or only the orphan's missing parent) as OTLP."""
    spans = [span(trace, ORPHAN_PARENT, "handoff", parent=LEAD)] if parent_only else [
        span(trace, LEAD, "invoke_agent lead", attrs=agent_attrs("lead")),
        span(trace, new_span(), "chat", parent=LEAD, attrs=CHAT),
        span(trace, new_span(), "invoke_agent researcher", parent=ORPHAN_PARENT,
             attrs=agent_attrs("researcher")),
    ]
    receiver = OtlpReceiver(db)
    await receiver.start()
    try:
        result = await receiver.export("traces", traces(spans).SerializeToString(), PROTOBUF,
                                       None)
    finally:
        await receiver.stop()
    assert result.rejected == 0, result


async def span_rows(db: DatabaseManager) -> list[tuple[Any, ...]]:
    """The otlp_spans rows in a comparable form (ids as text, flags as bools, sorted)."""
    rows = await db.store.fetch(f"SELECT {', '.join(OTLP_SPAN_COLUMNS)} FROM {OTLP_SPANS_TABLE}")
    return sorted((r["span_id"], r["trace_id"], r["parent_span_id"], str(r["agent_id"]),
                   bool(r["is_agent"]), bool(r["orphan"])) for r in rows)


async def rollup_rows(db: DatabaseManager) -> list[dict[str, Any]]:
    """The cost_rollups rows in a comparable form (day as text, sorted)."""
    rows = await db.store.fetch(f"SELECT {', '.join(ROLLUP_COLUMNS)} FROM cost_rollups")
    for row in rows:
        row["day"] = str(row["day"])
    return sorted(rows, key=lambda r: (r["day"], r["agent_id"], r["model"] or ""))


async def read_all(db: DatabaseManager) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in (created_at, id) order, as the public API returns them;
    the otlp_spans rows as ``span_rows`` gives them."""
    out: dict[str, list[Any]] = {}
    for table in COPY_TABLES:
        out[table] = [row async for row in getattr(db, ITERATORS[table])()]
    out[OTLP_SPANS_TABLE] = await span_rows(db)
    return out


def read_all_sync(url: str) -> dict[str, list[dict[str, Any]]]:
    async def go() -> dict[str, list[dict[str, Any]]]:
        async with DatabaseManager(url=url) as db:
            return await read_all(db)
    return asyncio.run(go())


async def with_bad_json_row(path: Path, row_id: str, details: str) -> None:
    """A database with one good system log and one whose details another tool wrote as text
    that is not JSON (``details``), as ``row_id``."""
    async with DatabaseManager(path) as db:
        await db.create_system_log("fine", details={"ok": 1})
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO system_logs (id, log_level, message, details, created_at) "
                     "VALUES (?, 'INFO', 'bad', ?, '2999-01-01T00:00:00.000000+00:00')",
                     (row_id, details))
    conn.close()
