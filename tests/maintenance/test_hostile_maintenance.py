"""Maintenance under hostile input, on both engines: prune and retention settings out of range,
imports that the API would refuse, formula-looking text in a CSV export, and an exact round trip.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from orchestrator_db import DatabaseManager, ValidationError, apply_retention_policy
from orchestrator_db.maintenance import RETENTION_ENV, retention_days
from orchestrator_db.tables import COLUMNS

TABLES = tuple(COLUMNS)


@pytest.fixture
async def fresh(db_url: str, tmp_path: Any) -> AsyncIterator[DatabaseManager]:
    """A second, empty database on the same engine as ``db``."""
    if db_url.startswith("sqlite"):
        async with DatabaseManager(url=f"sqlite:///{tmp_path}/fresh/orchestrator.db") as other:
            yield other
        return
    base, _, _ = db_url.partition("?")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        try:
            async with DatabaseManager(url=f"{base}?search_path={schema}") as other:
                yield other
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


async def all_rows(db: DatabaseManager) -> dict[str, list[dict[str, Any]]]:
    return {table: [row async for row in getattr(db, f"iter_{table}")()] for table in TABLES}


async def exported(db: DatabaseManager, table: str, format: str = "jsonl") -> str:
    out = io.StringIO()
    await db.export(table, out, format=format)
    return out.getvalue()


# prune and retention: durations too long for a date are a ValidationError -----------------------
@pytest.mark.parametrize("older_than", [
    "3000000d", "999999999d", "1000000w", timedelta(days=10**6), timedelta.max,
], ids=["3M-days-text", "999M-days-text", "1M-weeks-text", "1M-days", "timedelta-max"])
async def test_prune_reaching_before_year_1_is_a_validation_error(
        db: DatabaseManager, older_than: Any) -> None:
    oa = await db.create_orchestrator_agent("keeper")
    agent = await db.create_agent(oa, "s-1")
    await db.create_agent_log(agent, "kept")
    with pytest.raises(ValidationError) as info:
        await db.prune(older_than)
    assert info.value.field == "older_than"
    with pytest.raises(ValidationError):
        await db.prune(older_than, dry_run=True)
    assert [r["message"] for r in await db.list_agent_logs()] == ["kept"]


async def test_prune_says_why_a_well_formed_cutoff_is_refused(db: DatabaseManager) -> None:
    # The reason was hidden behind "must be a timedelta, a datetime, an ISO 8601 string...".
    with pytest.raises(ValidationError, match="outside years 1 to 9999") as info:
        await db.prune("9999-12-31T23:59:59-01:00")
    assert info.value.field == "older_than"
    with pytest.raises(ValidationError, match="older_than must be a timedelta"):
        await db.prune("next tuesday")


async def test_prune_with_long_but_valid_cutoffs_works(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("keeper")
    agent = await db.create_agent(oa, "s-1")
    await db.create_agent_log(agent, "ancient", created_at="0500-01-01T00:00:00Z")
    await db.create_agent_log(agent, "recent")
    assert await db.prune(datetime(400, 1, 1, tzinfo=UTC)) == {
        "agent_logs": 0, "system_logs": 0, "prompts": 0}
    assert await db.prune("36500d", dry_run=True) == {
        "agent_logs": 1, "system_logs": 0, "prompts": 0}
    assert await db.prune("36500d") == {"agent_logs": 1, "system_logs": 0, "prompts": 0}
    assert [r["message"] for r in await db.list_agent_logs()] == ["recent"]


@pytest.mark.parametrize("days", ["nan", "inf", "-inf", "1e9", "-1", "36501", "ten",
                                  math.nan, math.inf, -1, 10**9])
async def test_apply_retention_policy_refuses_days_out_of_range(
        db: DatabaseManager, days: Any) -> None:
    await db.create_system_log("old", created_at=datetime.now(UTC) - timedelta(days=400))
    with pytest.raises(ValidationError) as info:
        await apply_retention_policy(db, days=days)
    assert info.value.field == RETENTION_ENV
    assert len(await db.list_system_logs()) == 1


async def test_apply_retention_policy_prunes_what_is_older(
        db: DatabaseManager, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    old = await db.create_system_log("old", created_at=now - timedelta(days=3))
    new = await db.create_system_log("new", created_at=now - timedelta(hours=1))
    monkeypatch.delenv(RETENTION_ENV, raising=False)
    assert await apply_retention_policy(db) == {}
    assert await apply_retention_policy(db, days="0") == {}
    counts = await apply_retention_policy(db, days="2")
    assert counts["system_logs"] == 1
    assert [r["id"] for r in await db.list_system_logs()] == [new]
    assert old != new

    monkeypatch.setenv(RETENTION_ENV, "0.01")  # about 15 minutes
    counts = await apply_retention_policy(db)
    assert counts["system_logs"] == 1
    assert await db.list_system_logs() == []


@pytest.mark.parametrize("raw, expected", [
    (None, None), ("", None), ("  ", None), ("0", None), ("7", 7.0), (" 1.5 ", 1.5),
    ("36500", 36500.0),
])
def test_retention_days_reads_the_environment(monkeypatch: pytest.MonkeyPatch,
                                              raw: str | None, expected: float | None) -> None:
    if raw is None:
        monkeypatch.delenv(RETENTION_ENV, raising=False)
    else:
        monkeypatch.setenv(RETENTION_ENV, raw)
    assert retention_days() == expected
    # An explicit value wins over the environment.
    assert retention_days("3") == 3.0


@pytest.mark.parametrize("raw", ["nan", "inf", "-1", "1e9", "ten", "7d"])
def test_retention_days_refuses_a_bad_environment_value(monkeypatch: pytest.MonkeyPatch,
                                                         raw: str) -> None:
    monkeypatch.setenv(RETENTION_ENV, raw)
    with pytest.raises(ValidationError) as info:
        retention_days()
    assert info.value.field == RETENTION_ENV
    assert RETENTION_ENV in info.value.message and "\n" not in info.value.message


# import_rows refuses what the API refuses, and writes nothing of that batch -----------------------
async def _parents(db: DatabaseManager) -> dict[str, str]:
    oa = await db.create_orchestrator_agent("planner")
    agent = await db.create_agent(oa, "s-1")
    return {"oa": oa, "agent": agent}


def _full(table: str, values: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A row with every column of ``table`` (as export writes them); columns not set are null."""
    row = dict.fromkeys(COLUMNS[table])
    row.update(values)
    row.update(changes)
    return row


def _prompt_row(agent: str, **changes: Any) -> dict[str, Any]:
    return _full("prompts", {
        "id": str(uuid.uuid4()), "agent_id": agent, "content": "c", "model": "m",
        "status": "completed", "tokens_input": 1, "tokens_output": 2, "cost_usd": 0.5,
        "created_at": "2024-01-01T00:00:00.000000+00:00"}, changes)


def _log_row(agent: str, **changes: Any) -> dict[str, Any]:
    return _full("agent_logs", {
        "id": str(uuid.uuid4()), "agent_id": agent, "log_level": "INFO", "log_type": "event",
        "message": "m", "created_at": "2024-01-01T00:00:00.000000+00:00"}, changes)


def _system_row(**changes: Any) -> dict[str, Any]:
    return _full("system_logs", {
        "id": str(uuid.uuid4()), "log_level": "INFO", "source": "s", "message": "m",
        "created_at": "2024-01-01T00:00:00.000000+00:00"}, changes)


BAD_IMPORTS: dict[str, tuple[str, Any, str]] = {
    # name: (table, row maker taking the agent id, field named)
    "nul in message": ("agent_logs", lambda a: _log_row(a, message="a\x00b"), "message"),
    "surrogate in message": ("agent_logs", lambda a: _log_row(a, message="a\udc80b"), "message"),
    "nul in details": ("system_logs", lambda a: _system_row(details={"k": "a\x00b"}),
                       "details"),
    "surrogate in details key": ("system_logs", lambda a: _system_row(details={"\udc80": 1}),
                                 "details"),
    "nan cost": ("prompts", lambda a: _prompt_row(a, cost_usd=math.nan), "cost_usd"),
    "inf cost": ("prompts", lambda a: _prompt_row(a, cost_usd=math.inf), "cost_usd"),
    "cost above the cap": ("prompts", lambda a: _prompt_row(a, cost_usd=1e308), "cost_usd"),
    "negative cost": ("prompts", lambda a: _prompt_row(a, cost_usd=-1.0), "cost_usd"),
    "fractional tokens": ("prompts", lambda a: _prompt_row(a, tokens_input=2.7),
                          "tokens_input"),
    "tokens as text": ("prompts", lambda a: _prompt_row(a, tokens_output="5"),
                       "tokens_output"),
    "tokens above the cap": ("prompts", lambda a: _prompt_row(a, tokens_input=10**12 + 1),
                             "tokens_input"),
    "number for text": ("agent_logs", lambda a: _log_row(a, message=5), "message"),
    "number for model": ("prompts", lambda a: _prompt_row(a, model=5), "model"),
    "unknown column": ("system_logs", lambda a: {**_system_row(), "colour": "red"}, "colour"),
    "time out of range": ("system_logs",
                          lambda a: _system_row(created_at="9999-12-31T23:59:59-01:00"),
                          "created_at"),
    "bad level": ("system_logs", lambda a: _system_row(log_level="LOUD"), "log_level"),
    "id not a uuid": ("system_logs", lambda a: _system_row(id="not-a-uuid"), "id"),
    "null message": ("system_logs", lambda a: _system_row(message=None), "message"),
}


@pytest.mark.parametrize("what", list(BAD_IMPORTS))
@pytest.mark.parametrize("source", ["list", "async"])
async def test_import_refuses_what_the_api_refuses_and_writes_nothing_of_the_batch(
        db: DatabaseManager, what: str, source: str) -> None:
    p = await _parents(db)
    table, make, field = BAD_IMPORTS[what]
    good = {"prompts": _prompt_row, "agent_logs": _log_row}.get(table)
    first = good(p["agent"]) if good else _system_row()
    rows = [first, make(p["agent"]), _system_row() if table == "system_logs" else first]
    before = await all_rows(db)

    async def stream() -> AsyncIterator[dict[str, Any]]:
        for row in rows:
            await asyncio.sleep(0)
            yield row

    with pytest.raises(ValidationError) as info:
        await db.import_rows(table, rows if source == "list" else stream())
    assert info.value.field == field, info.value.message
    assert await all_rows(db) == before


async def test_import_refuses_rows_the_create_api_would_refuse(db: DatabaseManager) -> None:
    # The same values through the create API: each is refused there too, on the same field.
    p = await _parents(db)
    for what, (table, make, field) in BAD_IMPORTS.items():
        if table != "prompts":
            continue
        row = make(p["agent"])
        kwargs = {k: row[k] for k in ("model", "tokens_input", "tokens_output", "cost_usd")}
        with pytest.raises(ValidationError) as info:
            await db.create_prompt(p["agent"], "c", **kwargs)
        assert info.value.field == field, what


async def test_a_later_bad_batch_keeps_the_earlier_batches(db: DatabaseManager) -> None:
    p = await _parents(db)
    rows = [_log_row(p["agent"], message=f"m{i}") for i in range(5)]
    rows.append(_log_row(p["agent"], message="bad\x00"))
    with pytest.raises(ValidationError):
        await db.import_rows("agent_logs", rows, batch_size=2)
    # Batches of two: [0, 1] and [2, 3] were written, [4, bad] was not.
    assert sorted(r["message"] for r in await db.list_agent_logs()) == ["m0", "m1", "m2", "m3"]


async def _populate(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent(
        "plänner", "=SUM(A1:A2) ✓ \"quotes\", commas,\nnewlines and \\x00 as text",
        capabilities="plan,review", metadata={"nested": {"list": [1, 2.5, None, "ü", "+1"]}},
        agent_type="-minus", default_model="@model")
    agent = await db.create_agent(oa, "team/run-1", name="+plus", model="m",
                                  metadata={"=": "@"}, status="executing")
    await db.update_agent_status(agent, "completed")
    prompt = await db.create_prompt(agent, "=HYPERLINK(\"x\")", model="m")
    await db.complete_prompt(prompt, "-response", tokens_input=10**12, tokens_output=7,
                             cost_usd=1e9)
    await db.create_prompt(agent, "zero", cost_usd=-0.0)
    await db.create_agent_log(agent, "@mention", log_type="-t", details=["=1", {"k": None}],
                              created_at="0001-01-01T00:00:00.000001Z")
    await db.create_agent_log(agent, "\t\ttabs", log_level="DEBUG", details="plain")
    await db.create_system_log("+1 new", source="=src", details={"n": 1.5e-300},
                               created_at="9999-12-31T23:59:59.999998Z")
    await db.create_system_log("\U0001f600 \u2028 \ufffd")


async def test_export_then_import_gives_identical_rows(db: DatabaseManager,
                                                       fresh: DatabaseManager) -> None:
    await _populate(db)
    for table in TABLES:
        text = await exported(db, table)
        # JSON Lines ends lines with "\n" only: str.splitlines would also cut at U+2028.
        rows = [json.loads(line) for line in text.split("\n")[:-1]]
        assert await fresh.import_rows(table, rows) == len(rows)
    assert await all_rows(fresh) == await all_rows(db)
    for table in TABLES:
        assert await exported(fresh, table) == await exported(db, table)
        assert await exported(fresh, table, "csv") == await exported(db, table, "csv")
    source, copy = await db.session_summary("team/run-1"), await fresh.session_summary(
        "team/run-1")
    assert source is not None and source == copy
    assert (copy["tokens_input"], copy["cost_usd"]) == (10**12, 1e9)


# CSV export: formula-looking text is neutralised; JSON Lines keeps it -----------------------------
FORMULAS = ["=1+1", "+1", "-1", "@SUM(A1)", "=HYPERLINK(\"http://x\")"]


async def test_csv_export_prefixes_formula_looking_text(db: DatabaseManager) -> None:
    ids = [await db.create_system_log(text, source=text) for text in FORMULAS]
    plain = await db.create_system_log("plain = text", source="a-b")
    csv_rows = list(csv.DictReader(io.StringIO(await exported(db, "system_logs", "csv"))))
    by_id = {row["id"]: row for row in csv_rows}
    assert set(by_id) == {*ids, plain}
    for row_id, text in zip(ids, FORMULAS, strict=True):
        assert by_id[row_id]["message"] == "'" + text
        assert by_id[row_id]["source"] == "'" + text
    assert by_id[plain]["message"] == "plain = text"
    assert by_id[plain]["source"] == "a-b"
    jsonl = [json.loads(line) for line in (await exported(db, "system_logs")).split("\n")[:-1]]
    assert {row["id"]: row["message"] for row in jsonl} == {
        **dict(zip(ids, FORMULAS, strict=True)), plain: "plain = text"}
    assert all(not row["message"].startswith("'") for row in jsonl)
