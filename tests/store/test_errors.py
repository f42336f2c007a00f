"""Bad input gets a typed error naming what was wrong, the same on both engines, and loses nothing."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from orchestrator_db import (
    DatabaseManager,
    DuplicateError,
    ForeignKeyError,
    NotConnectedError,
    OrchestratorDBError,
    ReferencedError,
    SchemaError,
    SchemaNotFoundError,
    ValidationError,
)
from orchestrator_db.models import utc_now

MISSING = "0190f1c2-0000-7000-8000-000000000000"
SLICE = 2048  # PostgreSQL validates and writes a big batch in slices of this many rows


async def test_missing_schema_file(tmp_path: Path) -> None:
    db = DatabaseManager(tmp_path / "x.db", schema_path=tmp_path / "nope.sqlite")
    with pytest.raises(SchemaNotFoundError) as info:
        await db.connect()
    assert isinstance(info.value, FileNotFoundError)
    assert "nope.sqlite" in str(info.value)
    assert not db.is_connected


async def test_missing_parent_raises_foreign_key_error(db: DatabaseManager) -> None:
    with pytest.raises(ForeignKeyError, match=f"orchestrator agent {MISSING} does not exist") as e:
        await db.create_agent(MISSING, "s")
    assert e.value.field == "orchestrator_agent_id"
    assert isinstance(e.value.__cause__, sqlite3.IntegrityError | asyncpg.ForeignKeyViolationError)
    with pytest.raises(ForeignKeyError, match=f"agent {MISSING} does not exist"):
        await db.create_prompt(MISSING, "hi")
    with pytest.raises(ForeignKeyError, match=f"agent {MISSING} does not exist"):
        await db.create_agent_log(MISSING, "hi")
    assert (await db.stats())["counts"] == dict.fromkeys(
        ["orchestrator_agents", "agents", "prompts", "agent_logs", "system_logs"], 0)


async def test_bulk_logs_are_all_or_nothing(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    rows = [{"agent_id": agent, "message": f"m{i}"} for i in range(5)]
    with pytest.raises(ForeignKeyError, match=MISSING):
        await db.create_agent_logs([*rows, {"agent_id": MISSING, "message": "bad"}])
    with pytest.raises(ValidationError, match="row 5") as info:
        await db.create_agent_logs([*rows, {"agent_id": agent, "message": "x", "log_level": "LOUD"}])
    assert info.value.field == "log_level"
    assert await db.list_agent_logs() == []


async def test_big_bulk_batches_are_all_or_nothing_too(db: DatabaseManager) -> None:
    # Past SLICE rows PostgreSQL validates and writes a batch slice by slice, in one transaction:
    # a bad row or a missing agent in a late slice leaves nothing of the earlier slices.
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    n = 2 * SLICE + 100
    rows = [{"agent_id": agent, "message": f"m{i}"} for i in range(n)]
    with pytest.raises(ValidationError, match=f"row {n - 50}") as info:
        await db.create_agent_logs([*rows[:n - 50], {"agent_id": agent, "message": "\x00"},
                                    *rows[n - 49:]])
    assert info.value.field == "message"
    with pytest.raises(ForeignKeyError, match=MISSING) as fk:
        await db.create_agent_logs([*rows, {"agent_id": MISSING, "message": "late"}])
    assert fk.value.context["ids"] == [MISSING]
    with pytest.raises(ValidationError, match=f"row {SLICE + 1} must be a mapping"):
        await db.create_system_logs([*({"message": "s"} for _ in range(SLICE + 1)), 7])
    assert (await db.stats())["counts"]["agent_logs"] == 0
    assert (await db.stats())["counts"]["system_logs"] == 0
    # A generator is read once; every row lands, in order, with the ids returned.
    ids = await db.create_agent_logs(row for row in rows)
    assert len(ids) == n == len(set(ids))
    stored = await db.list_agent_logs(agent, limit=1000)
    assert [r["id"] for r in stored] == ids[:1000]
    assert [r["message"] for r in stored[:3]] == ["m0", "m1", "m2"]
    assert (await db.stats())["counts"]["agent_logs"] == n


async def test_big_bulk_batch_inside_a_transaction_rolls_back_with_it(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    rows = [{"agent_id": agent, "message": f"m{i}"} for i in range(SLICE * 2)]
    with pytest.raises(RuntimeError, match="after the batch"):
        async with db.transaction():
            assert len(await db.create_agent_logs(rows)) == len(rows)
            raise RuntimeError("after the batch")
    assert (await db.stats())["counts"]["agent_logs"] == 0
    async with db.transaction():
        await db.create_agent_logs(rows)
        await db.create_agent_log(agent, "one more")
    assert (await db.stats())["counts"]["agent_logs"] == len(rows) + 1


async def test_duplicate_name(db: DatabaseManager) -> None:
    await db.create_orchestrator_agent("planner")
    with pytest.raises(DuplicateError, match="'planner' already exists") as info:
        await db.create_orchestrator_agent("planner")
    assert info.value.field == "name"
    other = await db.create_orchestrator_agent("other")
    with pytest.raises(DuplicateError):
        await db.update_orchestrator_agent(other, name="planner")
    assert len(await db.list_orchestrator_agents()) == 2


async def test_duplicate_error_names_the_column_on_both_engines(db: DatabaseManager) -> None:
    # Below the manager (which words the message itself): the store's own translation of the
    # driver's unique violation names the column on SQLite and on PostgreSQL alike.
    await db.create_orchestrator_agent("twin")
    row = await db.get_orchestrator_agent_by_name("twin")
    assert row is not None
    store = db.store
    sql = store.insert_sql("orchestrator_agents", ("id", "name", "status", "created_at",
                                                   "updated_at"))
    with pytest.raises(DuplicateError) as caught:
        await store.execute(sql, [MISSING, "twin", "active", store.ts(utc_now()),
                                  store.ts(utc_now())])
    assert caught.value.field == "name"
    assert await db.get_orchestrator_agent(MISSING) is None


async def test_database_refusals_are_worded_alike_on_both_engines(db: DatabaseManager) -> None:
    # The messages carried the driver's text ("UNIQUE constraint failed: ..." against "Key
    # (...)=(...) already exists.", PostgreSQL's with the values and the whole failing row).
    trace, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    oa = await db.create_orchestrator_agent("o")
    await db.create_agent(oa, "s", trace_id=trace, span_id=span)
    with pytest.raises(DuplicateError) as caught:
        await db.create_agent(oa, "s", trace_id=trace, span_id=span)
    assert (caught.value.message, caught.value.field) == (
        "duplicate value: agents already holds a row with this trace_id, span_id", "span_id")
    row = await db.get_orchestrator_agent(oa)
    assert row is not None
    with pytest.raises(DuplicateError) as caught:
        await db.import_rows("orchestrator_agents", [{**row, "name": "other"}])
    assert (caught.value.message, caught.value.field) == (
        "duplicate value: orchestrator_agents already holds a row with this id", "id")
    store = db.store
    sql = store.insert_sql("system_logs", ("id", "log_level", "message", "created_at"))
    with pytest.raises(OrchestratorDBError) as error:
        await store.execute(sql, [MISSING, "INFO", None, store.ts(utc_now())])
    assert (error.value.message, error.value.field) == (
        "constraint failed: system_logs.message must not be null", "message")


async def test_referenced_orchestrator_agent(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    await db.create_agent(oa, "s")
    with pytest.raises(ReferencedError, match="still has 1 agent"):
        await db.delete_orchestrator_agent(oa)
    assert await db.get_orchestrator_agent(oa) is not None


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda db: db.get_agent("not-a-uuid"), "agent_id"),
        (lambda db: db.get_orchestrator_agent(42), "orchestrator_agent_id"),
        (lambda db: db.create_agent("123", "s"), "orchestrator_agent_id"),
        (lambda db: db.update_agent_status("xyz", "completed"), "agent_id"),
        (lambda db: db.list_prompts(agent_id="nope"), "agent_id"),
    ],
)
async def test_malformed_uuid(db: DatabaseManager, call, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="must be a UUID") as info:
        await call(db)
    assert info.value.field == field


async def test_unknown_status_names_allowed_values(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    with pytest.raises(ValidationError, match="status") as info:
        await db.create_agent(oa, "s", status="running")
    assert info.value.field == "status"
    assert "executing" in str(info.value)
    agent = await db.create_agent(oa, "s")
    with pytest.raises(ValidationError, match="pending, executing, completed, failed, cancelled"):
        await db.update_agent_status(agent, "done")
    with pytest.raises(ValidationError) as info:
        await db.create_orchestrator_agent("x", status="gone")
    assert info.value.field == "status"
    with pytest.raises(ValidationError):
        await db.list_agents(status="weird")
    assert len(await db.list_agents()) == 1


async def test_unknown_update_field(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    with pytest.raises(ValidationError, match="unknown field 'colour'") as info:
        await db.update_agent(agent, colour="red")
    assert info.value.field == "colour"
    assert "allowed fields" in str(info.value) and "status" in str(info.value)
    with pytest.raises(ValidationError, match="no fields to update"):
        await db.update_orchestrator_agent(oa)
    with pytest.raises(ValidationError, match="cannot be set to None"):
        await db.update_orchestrator_agent(oa, name=None)


async def test_negative_and_non_finite_numbers(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    with pytest.raises(ValidationError) as info:
        await db.create_prompt(agent, "c", tokens_input=-1)
    assert info.value.field == "tokens_input"
    prompt = await db.create_prompt(agent, "c")
    with pytest.raises(ValidationError) as info:
        await db.complete_prompt(prompt, "r", tokens_output=-5)
    assert info.value.field == "tokens_output"
    with pytest.raises(ValidationError) as info:
        await db.complete_prompt(prompt, "r", cost_usd=float("nan"))
    assert info.value.field == "cost_usd"
    with pytest.raises(ValidationError):
        await db.create_prompt(agent, "c", tokens_input=2**63)
    row = await db.get_prompt(prompt)
    assert row is not None and row["status"] == "pending"


@pytest.mark.parametrize("cursor", ["garbage", "", "eyJ4IjoxfQ", "W10", 12])
async def test_malformed_cursor(db: DatabaseManager, cursor: object) -> None:
    with pytest.raises(ValidationError) as info:
        await db.list_agent_logs(cursor=cursor)
    assert info.value.field == "cursor"


async def test_cursor_of_other_order_is_refused(db: DatabaseManager) -> None:
    await db.create_system_logs([{"message": str(i)} for i in range(3)])
    page = await db.page_system_logs(limit=1)
    assert page.next_cursor
    with pytest.raises(ValidationError, match="order"):
        await db.page_system_logs(limit=1, cursor=page.next_cursor, order="desc")


@pytest.mark.parametrize("limit", [0, -1, 1001, "10", 2.5, True])
async def test_bad_limit(db: DatabaseManager, limit: object) -> None:
    with pytest.raises(ValidationError) as info:
        await db.list_system_logs(limit=limit)
    assert info.value.field == "limit"


async def test_bad_payloads(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    cases = [
        (lambda: db.create_agent_log(agent, "x" * 1_000_001), "message"),
        (lambda: db.create_agent_log(agent, "nul\x00byte"), "message"),
        (lambda: db.create_agent_log(agent, "x", details={"bad": float("inf")}), "details"),
        (lambda: db.create_agent_log(agent, "x", details={"o": object()}), "details"),
        (lambda: db.create_agent_log(agent, "x", details={"n": "\x00"}), "details"),
        (lambda: db.create_orchestrator_agent(""), "name"),
        (lambda: db.create_orchestrator_agent("n" * 201), "name"),
        (lambda: db.create_agent(oa, ""), "session_id"),
        (lambda: db.create_system_log("x", log_level="TRACE"), "log_level"),
        (lambda: db.list_agent_logs(since="yesterday"), "since"),
        (lambda: db.cost_summary("week"), "group_by"),
    ]
    for call, field in cases:
        with pytest.raises(ValidationError) as info:
            await call()
        assert info.value.field == field, (field, info.value)
    assert await db.list_agent_logs() == []
    assert await db.list_system_logs() == []


async def test_update_and_delete_of_missing_id_return_false(db: DatabaseManager) -> None:
    assert await db.update_agent_status(MISSING, "completed") is False
    assert await db.update_agent(MISSING, name="x") is False
    assert await db.update_orchestrator_agent(MISSING, description="x") is False
    assert await db.update_prompt(MISSING, status="failed") is False
    assert await db.complete_prompt(MISSING, "r") is False
    assert await db.delete_agent(MISSING) is False
    assert await db.delete_prompt(MISSING) is False
    assert await db.delete_orchestrator_agent(MISSING) is False
    assert await db.get_agent(MISSING) is None


async def test_use_before_connect_and_after_close(db_url: str) -> None:
    db = DatabaseManager(url=db_url)
    with pytest.raises(NotConnectedError, match="connect"):
        await db.list_agents()
    async with db:
        await db.create_orchestrator_agent("o")
    with pytest.raises(NotConnectedError):
        await db.create_orchestrator_agent("p")
    with pytest.raises(NotConnectedError):
        db.transaction()
    async with db:  # reconnecting works and the data is still there
        assert [o["name"] for o in await db.list_orchestrator_agents()] == ["o"]


async def test_not_a_database_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SchemaError, match="not a SQLite database"):
        await DatabaseManager(path).connect()


async def test_bad_url() -> None:
    with pytest.raises(ValidationError, match="unsupported database URL scheme"):
        DatabaseManager(url="mysql://localhost/x")


async def test_unreachable_postgres_is_a_clear_error() -> None:
    db = DatabaseManager(url="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(OrchestratorDBError, match="cannot connect to PostgreSQL"):
        await db.connect()


async def test_log_update_errors(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    log = await db.create_agent_log(await db.create_agent(oa, "s"), "m")
    with pytest.raises(ValidationError, match="unknown field 'agent_id'"):
        await db.update_agent_log(log, agent_id=MISSING)
    with pytest.raises(ValidationError, match="cannot be set to None") as info:
        await db.update_agent_log(log, message=None)
    assert info.value.field == "message"
    with pytest.raises(ValidationError) as info:
        await db.update_system_log(log, log_level="LOUD")
    assert info.value.field == "log_level"
    assert (await db.get_agent_log(log) or {})["message"] == "m"


@pytest.mark.parametrize("field, value, digits", [
    ("trace_id", "zz", 32), ("trace_id", "A" * 32, 32), ("span_id", "", 16),
    ("span_id", "g" * 16, 16)])
async def test_a_malformed_trace_or_span_id_says_what_it_must_be(
        db: DatabaseManager, field: str, value: str, digits: int) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    with pytest.raises(ValidationError, match=rf"^{field}: .*\^\[0-9a-f\]\{{{digits}\}}\$") as e:
        await db.create_agent_log(agent, "m", **{field: value})
    assert e.value.field == field and "NUL" not in e.value.message


@pytest.mark.parametrize("call, field", [
    (lambda db: db.list_agents_by_session(None), "session_id"),
    (lambda db: db.get_agents_by_orchestrator(None), "orchestrator_agent_id"),
    (lambda db: db.list_prompts_by_agent(None), "agent_id"),
    (lambda db: db.list_agents(colour=1), "colour"),
    (lambda db: db.list_agent_logs(level="ERROR"), "level"),
    (lambda db: db.page_system_logs(foo=1, limit=5), "foo"),
    (lambda db: db.list_orchestrator_agents(name="x"), "name"),
], ids=["by-session-None", "by-orchestrator-None", "by-agent-None", "unknown-filter",
        "level-for-log_level", "unknown-with-paging", "unknown-orchestrator-filter"])
async def test_a_missing_selector_or_an_unknown_filter_is_refused(
        db: DatabaseManager, call: Any, field: str) -> None:
    # None for the argument a *_by_* method selects by would list every row; an unknown
    # keyword would be dropped (or fail inside): both are a ValidationError naming it.
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    await db.create_prompt(agent, "p")
    with pytest.raises(ValidationError) as e:
        await call(db)
    assert e.value.field == field
    assert repr(field) in e.value.message or f"{field} is required" in e.value.message


async def test_insert_records_names_an_unknown_table(db: DatabaseManager) -> None:
    with pytest.raises(ValidationError, match="table must be one of") as e:
        await db.insert_records("nope", [{"id": "x"}])
    assert e.value.field == "table"


async def test_insert_records_refuses_a_time_given_as_text_with_our_error(
        db: DatabaseManager) -> None:
    # SQLite raised a bare AttributeError ('str' object has no attribute 'tzinfo').
    with pytest.raises(ValidationError):
        await db.insert_records("system_logs", [{
            "id": MISSING, "log_level": "INFO", "message": "m", "source": None,
            "details": None, "created_at": "2026-01-01T00:00:00+00:00"}])
    assert await db.list_system_logs() == []


async def test_an_agent_cannot_become_its_own_ancestor(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    lead = await db.create_agent(oa, "s")
    sub = await db.create_agent(oa, "s", parent_agent_id=lead)
    leaf = await db.create_agent(oa, "s", parent_agent_id=sub)
    for agent, parent, why in ((lead, lead, "the agent itself"), (lead, sub, "sub-agents"),
                               (lead, leaf, "sub-agents"), (sub, leaf, "sub-agents")):
        with pytest.raises(ValidationError, match=why) as e:
            await db.update_agent(agent, parent_agent_id=parent)
        assert e.value.field == "parent_agent_id"
    assert [a["parent_agent_id"] for a in await db.list_agents()] == [None, lead, sub]
    # Moving a run elsewhere in the tree, or to the top, is fine.
    assert await db.update_agent(leaf, parent_agent_id=lead)
    assert await db.update_agent(sub, parent_agent_id=None)
    assert await db.update_agent(lead, parent_agent_id=sub)
    assert [a["parent_agent_id"] for a in await db.list_agents()] == [sub, None, lead]


async def test_a_time_in_a_message_is_shown_as_iso_8601(db: DatabaseManager) -> None:
    # As the REST API passes a parsed query parameter: shown as a caller writes it.
    late = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1)))
    with pytest.raises(ValidationError, match=r"got '9999-12-31T23:59:59-01:00' \(") as e:
        await db.list_agents(since=late)
    assert "datetime.datetime" not in e.value.message


async def test_capabilities_hold_at_most_a_thousand_names(db: DatabaseManager) -> None:
    # Each name is short; their number was unbounded (20 MB of them were stored).
    oa = await db.create_orchestrator_agent("many", capabilities=",".join(["c"] * 1000))
    assert len((await db.get_orchestrator_agent(oa) or {})["capabilities"]) == 1000
    with pytest.raises(ValidationError, match="at most 1000 items") as e:
        await db.update_orchestrator_agent(oa, capabilities=["c"] * 1001)
    assert e.value.field == "capabilities"


async def test_writes_stop_when_the_sqlite_file_is_removed_or_replaced(tmp_path: Path) -> None:
    # SQLite went on writing to the open, unlinked file: writes were acknowledged, then lost.
    from orchestrator_db import UnavailableError

    path = tmp_path / "gone.db"
    async with DatabaseManager(path) as db:
        oa = await db.create_orchestrator_agent("o")
        agent = await db.create_agent(oa, "s")
        await db.create_agent_log(agent, "kept")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        writes = [lambda: db.create_agent_log(agent, "lost"),  # group commit
                  lambda: db.create_agent_logs([{"agent_id": agent, "message": "x"}] * 600)]
        for write in writes:
            with pytest.raises(UnavailableError, match="was removed or replaced"):
                await write()
        with pytest.raises(UnavailableError):
            async with db.transaction():
                await db.create_system_log("lost too")
        # A new file in its place (restored from a backup, say) is not written either.
        sqlite3.connect(path).close()
        with pytest.raises(UnavailableError):
            await db.create_system_log("into the new file?")
    assert path.stat().st_size == 0
