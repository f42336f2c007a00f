"""Migrations, the rendered schema script, and the indexes the list queries rely on."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator_db import DatabaseManager, SchemaError, render_sqlite_schema
from orchestrator_db.config import Dialect
from orchestrator_db.store.base import load_migrations
from orchestrator_db.store.migrations import render_template
from orchestrator_db.tables import (
    CHANGE_COLUMNS,
    CHANGE_FIELDS,
    CHANGES_TABLE,
    COLUMNS,
    OTLP_SPAN_COLUMNS,
    OTLP_SPANS_TABLE,
    ROLLUP_COLUMNS,
    ROLLUP_TABLE,
)

TABLES = {"orchestrator_agents", "agents", "prompts", "agent_logs", "system_logs"}


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_both_engines_have_the_same_migration_history() -> None:
    sqlite = [(m.version, m.name) for m in load_migrations(Dialect.SQLITE)]
    postgres = [(m.version, m.name) for m in load_migrations(Dialect.POSTGRES)]
    assert sqlite == postgres
    assert sqlite[0] == (1, "initial")


async def test_database_from_rendered_script_is_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "from_script.db"
    script = render_sqlite_schema()
    with sqlite3.connect(path) as conn:
        conn.executescript(script)
        conn.executescript(script)  # idempotent: running it twice changes nothing
    assert _tables(path) >= TABLES
    before = sqlite3.connect(path).execute("SELECT * FROM schema_migrations").fetchall()
    async with DatabaseManager(path) as db:
        assert await db.schema_version() == load_migrations(Dialect.SQLITE)[-1].version
        oa = await db.create_orchestrator_agent("works")
        assert await db.get_orchestrator_agent(oa) is not None
    after = sqlite3.connect(path).execute("SELECT * FROM schema_migrations").fetchall()
    assert before == after, "connect() re-applied migrations to an up-to-date database"


# In CI (CI=true) the tool is installed by .ci/run: a missing one fails instead of skipping.
@pytest.mark.skipif(shutil.which("sqlite3") is None and not os.environ.get("CI"),
                    reason="the sqlite3 command-line tool is not installed")
async def test_sqlite3_cli_can_create_the_database(tmp_path: Path) -> None:
    schema = tmp_path / "schema_orchestrator.sqlite"
    schema.write_text(render_sqlite_schema())
    path = tmp_path / "cli.db"
    subprocess.run(["sqlite3", str(path)], input=schema.read_text(), text=True, check=True)
    async with DatabaseManager(path) as db:
        assert await db.schema_version() >= 1


async def test_schema_path_creates_an_empty_database(tmp_path: Path) -> None:
    schema = tmp_path / "schema.sqlite"
    schema.write_text(render_sqlite_schema())
    async with DatabaseManager(tmp_path / "new" / "x.db", schema_path=schema) as db:
        assert await db.schema_version() >= 1
    assert _tables(tmp_path / "new" / "x.db") >= TABLES


async def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    async with DatabaseManager(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', '2030-01-01')")
    with pytest.raises(SchemaError, match="newer than this orchestrator-db"):
        await DatabaseManager(path).connect()


async def test_connect_applies_migrations_once(db_url: str) -> None:
    for _ in range(3):
        async with DatabaseManager(url=db_url) as db:
            rows = await db.store.fetch("SELECT version FROM schema_migrations")
    assert sorted(r["version"] for r in rows) == [m.version for m in load_migrations(
        db.dialect)]


CHANGE_OPS = ("insert", "update", "delete")


async def test_change_triggers_exist_for_every_table_and_op(db: DatabaseManager) -> None:
    assert set(CHANGE_FIELDS) == TABLES
    expected = {(f"changes_{t}_{op}", t, op) for t in TABLES for op in CHANGE_OPS}
    if db.dialect is Dialect.SQLITE:
        rows = await db.store.fetch(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")
        found = set()
        for r in rows:
            if not r["name"].startswith("changes_"):  # the aggregates' triggers (0005)
                continue
            event = re.search(r"\bAFTER (INSERT|UPDATE|DELETE) ON\b", r["sql"])
            assert event is not None, r["sql"]
            found.add((r["name"], r["tbl_name"], event[1].lower()))
    else:
        rows = await db.store.fetch(
            "SELECT t.tgname, c.relname, t.tgtype, t.tgoldtable, t.tgnewtable, "
            "t.tgfoid::regproc::text AS function FROM pg_trigger AS t "
            "JOIN pg_class AS c ON c.oid = t.tgrelid "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND NOT t.tgisinternal")
        # tgtype bits: 1 = row-level (we want statement-level), 4 insert, 8 delete, 16 update.
        op_bits = {4: "insert", 8: "delete", 16: "update"}
        found = set()
        for r in rows:
            if not r["tgname"].startswith("changes_"):  # the aggregates' triggers (0005)
                continue
            assert r["tgtype"] & 1 == 0, f"{r['tgname']} is a row-level trigger"
            assert r["function"].endswith(f"orchestrator_db_changes_{r['relname']}")
            (op,) = [name for bit, name in op_bits.items() if r["tgtype"] & bit]
            transition = (r["tgoldtable"], r["tgnewtable"])
            assert transition == (("old_rows", None) if op == "delete" else (None, "new_rows"))
            found.add((r["tgname"], r["relname"], op))
    assert found == expected


async def test_an_insert_into_each_table_records_its_change_fields(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("planner")
    agent = await db.create_agent(oa, session_id="s-1")
    ids = {
        "orchestrator_agents": oa,
        "agents": agent,
        "prompts": await db.create_prompt(agent, "hello"),
        "agent_logs": await db.create_agent_log(agent, "started", log_level="WARNING"),
        "system_logs": await db.create_system_log("booted", log_level="ERROR"),
    }
    rows = await db.store.fetch(
        "SELECT table_name, op, row_id, session_id, agent_id, log_level FROM changes "
        "ORDER BY position")
    recorded = {r["table_name"]: (r["op"], str(r["row_id"]), r["session_id"],
                                  None if r["agent_id"] is None else str(r["agent_id"]),
                                  r["log_level"]) for r in rows}
    assert recorded == {
        "orchestrator_agents": ("insert", oa, None, None, None),
        "agents": ("insert", agent, "s-1", agent, None),
        "prompts": ("insert", ids["prompts"], None, agent, None),
        "agent_logs": ("insert", ids["agent_logs"], None, agent, "WARNING"),
        "system_logs": ("insert", ids["system_logs"], None, None, "ERROR"),
    }
    assert len(rows) == len(ids)
    for table, fields in CHANGE_FIELDS.items():  # the expectations above follow tables.py
        _, _, session_id, agent_id, log_level = recorded[table]
        assert (session_id is None) == (fields.session_id is None)
        assert (agent_id is None) == (fields.agent_id is None)
        assert (log_level is None) == (fields.log_level is None)


async def test_a_delete_records_the_old_row(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("planner")
    agent = await db.create_agent(oa, session_id="s-2")
    log = await db.create_agent_log(agent, "started", log_level="DEBUG")
    assert await db.delete_agent_log(log)
    rows = await db.store.fetch(
        "SELECT op, row_id, session_id, agent_id, log_level FROM changes "
        "WHERE table_name = 'agent_logs' ORDER BY position")
    assert [(r["op"], str(r["row_id"]), str(r["agent_id"]), r["log_level"]) for r in rows] == [
        ("insert", log, agent, "DEBUG"), ("delete", log, agent, "DEBUG")]


QUERIES = {
    # latest 50 of one agent
    "agent_logs_by_agent": (
        "SELECT id FROM agent_logs WHERE agent_id = {p1} ORDER BY created_at DESC, id DESC LIMIT 50",
        "ix_agent_logs_agent",
    ),
    # keyset page
    "agent_logs_keyset": (
        "SELECT id FROM agent_logs WHERE agent_id = {p1} AND (created_at, id) > ({p2}, {p3}) "
        "ORDER BY created_at, id LIMIT 50",
        "ix_agent_logs_agent",
    ),
    "agents_by_session": (
        "SELECT id FROM agents WHERE session_id = {p1} ORDER BY created_at, id LIMIT 50",
        "ix_agents_session",
    ),
    "prompts_by_agent": (
        "SELECT id FROM prompts WHERE agent_id = {p1} ORDER BY created_at, id LIMIT 50",
        "ix_prompts_agent",
    ),
    "system_logs_by_level": (
        "SELECT id FROM system_logs WHERE log_level = {p1} ORDER BY created_at, id LIMIT 50",
        "ix_system_logs_level",
    ),
}


@pytest.mark.parametrize("name", sorted(QUERIES))
async def test_list_queries_use_their_index(db: DatabaseManager, name: str) -> None:
    sql, index = QUERIES[name]
    agent = "0190f1c2-0000-7000-8000-000000000000"
    ts = "2026-01-01T00:00:00.000000+00:00"
    if db.dialect is Dialect.SQLITE:
        rows = await db.store.fetch(
            "EXPLAIN QUERY PLAN " + sql.format(p1="?", p2="?", p3="?"),
            [agent if "agent" in name else "x", ts, agent][: sql.count("{")],
        )
        plan = " ".join(r["detail"] for r in rows)
        assert index in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        # Make the planner prefer indexes the way it would on a large table.
        async with db.transaction():
            await db.store.execute("SET LOCAL enable_seqscan = off")
            await db.store.execute("SET LOCAL enable_bitmapscan = off")
            params = ["x", datetime(2026, 1, 1, tzinfo=UTC), agent]
            text = sql.format(p1="$1", p2="$2::timestamptz", p3="$3::uuid")
            if "agent_id" in sql:
                text = text.replace("agent_id = $1", "agent_id = $1::uuid")
                params[0] = agent
            rows = await db.store.fetch("EXPLAIN " + text, params[: sql.count("{")])
        plan = " ".join(r["QUERY PLAN"] for r in rows)
        assert index in plan, plan
        assert "Sort" not in plan, plan


def test_every_template_word_is_filled_on_both_engines() -> None:
    for dialect in Dialect:
        for migration in load_migrations(dialect):
            assert not re.search(r"\{[a-z_]+\}", migration.sql), (dialect, migration.name)


def test_an_unknown_template_word_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match=r"unknown schema template word \{jsonn\}"):
        render_template("CREATE TABLE t (x {jsonn});", Dialect.SQLITE)


def test_a_template_renders_each_engines_own_types() -> None:
    template = "CREATE TABLE t (id {id}, at {time} NOT NULL{default_now}, d {json}){without_rowid};"
    assert render_template(template, Dialect.SQLITE) == (
        "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, at TEXT NOT NULL, d TEXT) WITHOUT ROWID;")
    assert render_template(template, Dialect.POSTGRES) == (
        "CREATE TABLE t (id uuid PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), d jsonb);")


async def test_both_engines_create_the_same_tables_and_columns(db: DatabaseManager) -> None:
    # One template per migration: a column added for one engine only would show up here.
    if db.store.dialect is Dialect.SQLITE:
        rows = await db.store.fetch(
            "SELECT m.name AS t, p.name AS c FROM sqlite_master AS m "
            "JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table' ORDER BY m.name, p.cid")
    else:
        rows = await db.store.fetch(
            "SELECT table_name AS t, column_name AS c FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position")
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row["t"], []).append(row["c"])
    for table, columns in COLUMNS.items():
        assert tuple(found[table]) == columns, table
    assert tuple(found[CHANGES_TABLE]) == (*CHANGE_COLUMNS, "created_at")
    assert tuple(found[OTLP_SPANS_TABLE]) == OTLP_SPAN_COLUMNS
    assert tuple(found[ROLLUP_TABLE]) == ROLLUP_COLUMNS
