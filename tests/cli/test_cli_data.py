"""sessions, agents, logs, export and prune on both engines, checked against the library."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import invoke, sample_data

from orchestrator_db import DatabaseManager


def library(url: str, method: str, *args: Any, **kwargs: Any) -> Any:
    async def go() -> Any:
        async with DatabaseManager(url=url) as db:
            return await getattr(db, method)(*args, **kwargs)
    return asyncio.run(go())


@pytest.fixture
def data(db_url: str) -> dict[str, Any]:
    return {"url": db_url, **sample_data(db_url)}


def test_sessions_table_and_json(data: dict[str, Any]) -> None:
    result = invoke("sessions", "--url", data["url"])
    assert result.exit_code == 0, result.output
    for text in ("run-1", "run-2", "completed", "failed", "0.2500", "1,200"):
        assert text in result.stdout
    as_json = json.loads(invoke("sessions", "--url", data["url"], "--json").stdout)
    assert as_json == library(data["url"], "list_sessions", limit=20)
    assert [s["session_id"] for s in as_json] == ["run-2", "run-1"]  # most recent first


def test_agents_and_definitions(data: dict[str, Any]) -> None:
    out = invoke("agents", "--url", data["url"]).stdout
    assert data["a1"] in out and data["a2"] in out and "plan (planner)" in out
    failed = json.loads(invoke("agents", "--url", data["url"], "--status", "failed",
                               "--json").stdout)
    assert [a["id"] for a in failed] == [data["a2"]]
    one = json.loads(invoke("agents", "--url", data["url"], "--session", "run-1",
                            "--json").stdout)
    assert [a["id"] for a in one] == [data["a1"]]
    definitions = invoke("agents", "--url", data["url"], "--definitions").stdout
    assert "planner" in definitions and "builder" in definitions and "opus" in definitions


def test_logs_latest_oldest_first_and_filters(data: dict[str, Any]) -> None:
    lines = invoke("logs", "--url", data["url"], "--json").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    everything = library(data["url"], "list_agent_logs")
    assert rows == everything
    last_two = [json.loads(x) for x in invoke("logs", "--url", data["url"], "--json", "-n",
                                              "2").stdout.splitlines()]
    assert last_two == everything[-2:]
    warnings = [json.loads(x) for x in invoke("logs", "--url", data["url"], "--json",
                                              "--level", "warning").stdout.splitlines()]
    assert [r["log_level"] for r in warnings] == ["WARNING", "ERROR"]
    by_agent = [json.loads(x) for x in invoke("logs", "--url", data["url"], "--json",
                                              "--agent", data["a2"]).stdout.splitlines()]
    assert [r["message"] for r in by_agent] == ["it broke"]
    by_session = invoke("logs", "--url", data["url"], "--session", "run-1").stdout
    assert "step 0" in by_session and "it broke" not in by_session
    system = invoke("logs", "--url", data["url"], "--system").stdout
    assert "orchestrator up" in system and "main" in system


def test_log_text_is_printed_literally_not_as_markup(data: dict[str, Any]) -> None:
    out = invoke("logs", "--url", data["url"], "--level", "WARNING").stdout
    assert "careful [red]not markup[/red]" in out


def test_export_jsonl_to_a_file(data: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "logs.jsonl"
    result = invoke("export", "--url", data["url"], "--table", "agent_logs", "-o", str(target))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in library(data["url"], "list_agent_logs")]
    assert f"exported {len(rows)} rows of agent_logs to {target}" in result.stderr
    assert not (tmp_path / "logs.jsonl.partial").exists()


def test_export_csv_to_stdout_with_a_session_filter(data: dict[str, Any]) -> None:
    result = invoke("export", "--url", data["url"], "--table", "agent_logs", "--format", "csv",
                    "--session", "run-2")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["message"] for r in rows] == ["it broke"]
    assert "exported 1 row of agent_logs" in result.stderr


def test_export_takes_its_format_from_the_file_name(data: dict[str, Any],
                                                    tmp_path: Path) -> None:
    # `-o prompts.csv` wrote JSON Lines into the .csv file.
    target = tmp_path / "logs.csv"
    result = invoke("export", "--url", data["url"], "--table", "agent_logs", "-o", str(target))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["id"] for r in rows] == [r["id"] for r in library(data["url"], "list_agent_logs")]
    mismatch = tmp_path / "other.csv"
    result = invoke("export", "--url", data["url"], "--table", "agent_logs", "--format",
                    "jsonl", "-o", str(mismatch))
    assert result.exit_code == 1
    assert "--format jsonl does not match the file name" in result.stderr
    assert not mismatch.exists()


def test_export_into_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    # `export | head -c 10` said "error: cannot write None: Broken pipe".
    url = f"sqlite:///{tmp_path}/big.db"

    async def fill() -> None:
        async with DatabaseManager(url=url) as db:
            oa = await db.create_orchestrator_agent("o")
            agent = await db.create_agent(oa, "s")
            await db.create_agent_logs([{"agent_id": agent, "message": "x" * 200}] * 3000)
    asyncio.run(fill())
    with subprocess.Popen([sys.executable, "-m", "orchestrator_db.cli", "export", "--url", url,
                           "--table", "agent_logs"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert len(proc.stdout.read(10)) == 10
        proc.stdout.close()
        assert proc.wait(timeout=120) == 1  # as Click ends any command whose reader went away
        assert proc.stderr.read() == b""


def test_prune_dry_run_then_for_real(data: dict[str, Any]) -> None:
    before = library(data["url"], "stats")["counts"]
    dry = json.loads(invoke("prune", "--url", data["url"], "--older-than", "0s", "--dry-run",
                            "--json").stdout)
    assert dry["dry_run"] is True
    assert dry["counts"]["agent_logs"] == before["agent_logs"]
    assert library(data["url"], "stats")["counts"] == before
    cost = library(data["url"], "cost_summary", "session")

    result = invoke("prune", "--url", data["url"], "--older-than", "0s", "--table",
                    "agent_logs", "--table", "prompts")
    assert result.exit_code == 0, result.output
    assert f"deleted {before['agent_logs'] + before['prompts']} rows" in result.stdout
    after = library(data["url"], "stats")["counts"]
    assert after["agent_logs"] == 0 and after["prompts"] == 0
    assert after["system_logs"] == before["system_logs"]
    assert library(data["url"], "cost_summary", "session") == cost  # money is never lost


def test_empty_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    invoke("upgrade", "--url", url)
    assert "no sessions yet" in invoke("sessions", "--url", url).stdout
    assert invoke("logs", "--url", url).stdout == ""
    assert json.loads(invoke("agents", "--url", url, "--json").stdout) == []
