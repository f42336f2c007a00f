"""logs --follow as a real process tailing writes of another process; copy through the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli_helpers import interrupt, invoke, sample_data, start

from orchestrator_db import DatabaseManager


def _reader(stream, lines: queue.Queue[str]) -> None:  # type: ignore[no-untyped-def]
    for line in stream:
        lines.put(line)


def _follow(*args: str, env: dict[str, str]
            ) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """Start ``logs --follow`` with ``args``; return it and the queue its lines arrive in."""
    proc = start("logs", "--follow", *args, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    return proc, lines


def _next_line(lines: queue.Queue[str], proc: subprocess.Popen[str]) -> str:
    try:
        # Generous: a guard against a hang, not a measurement.
        return lines.get(timeout=60)
    except queue.Empty:
        proc.kill()
        raise AssertionError("logs --follow printed nothing new within 60 s") from None


def test_logs_follow_prints_new_lines_from_another_process(db_url: str) -> None:
    ids = sample_data(db_url)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    proc, lines = _follow("--json", "--url", db_url, "--agent", ids["a1"], "-n", "2", env=env)
    try:
        first = [json.loads(_next_line(lines, proc)) for _ in range(2)]
        assert [r["message"] for r in first] == ["step 4", "careful [red]not markup[/red]"]

        async def write() -> None:
            async with DatabaseManager(url=db_url) as db:
                await db.create_agent_log(ids["a2"], "other agent: filtered out")
                await db.create_agent_logs([
                    {"agent_id": ids["a1"], "message": f"live {i}"} for i in range(3)])
        asyncio.run(write())
        live = [json.loads(_next_line(lines, proc))["message"] for _ in range(3)]
        assert live == ["live 0", "live 1", "live 2"]
    finally:
        err = interrupt(proc)
    assert proc.returncode == 0, err
    assert lines.empty()  # nothing twice, nothing from the other agent
    assert "Traceback" not in err


def test_copy_command_sqlite_to_postgres(pg_url: str, tmp_path: Path) -> None:
    source = tmp_path / "orchestrator.db"
    sample_data(f"sqlite:///{source}")
    result = invoke("copy", str(source), pg_url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verified"] is True and report["mode"] == "new"
    assert {t["table"]: t["copied_rows"] for t in report["tables"]}["agent_logs"] == 7

    # One URL: the source is --db; a second run has nothing left to copy.
    again = invoke("copy", "--db", str(source), pg_url)
    assert again.exit_code == 0, again.output
    assert "already complete: nothing to copy; verified" in again.stdout
    assert "verified" in again.stdout


def test_logs_follow_from_an_empty_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/orchestrator.db"

    async def setup() -> str:
        async with DatabaseManager(url=url) as db:
            oa = await db.create_orchestrator_agent("o")
            return await db.create_agent(oa, "s")
    agent = asyncio.run(setup())
    proc, lines = _follow("--url", url, env={**os.environ, "COLUMNS": "200"})
    try:
        async def write() -> None:
            async with DatabaseManager(url=url) as db:
                await db.create_agent_log(agent, "first [bold]words[/bold]", log_type="step_start")
        asyncio.run(write())
        line = _next_line(lines, proc)
        assert "INFO" in line and agent[-8:] in line and "step_start" in line
        assert "first [bold]words[/bold]" in line
    finally:
        err = interrupt(proc)
    assert proc.returncode == 0, err


def test_logs_follow_prints_lines_written_after_a_future_dated_one(db_url: str) -> None:
    # A clock far ahead (or any created_at the writer chose) must not hide what comes after:
    # follow shows every line inserted, in the order written, whatever its created_at.
    ids = sample_data(db_url)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()

    async def write_ahead() -> None:
        async with DatabaseManager(url=db_url) as db:
            await db.create_agent_log(ids["a1"], "far future",
                                      created_at="9999-12-31T23:59:59+14:00")
            await db.create_agent_log(ids["a1"], "an hour ahead", created_at=later)
    asyncio.run(write_ahead())
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    proc, lines = _follow("--json", "--url", db_url, "--agent", ids["a1"], "-n", "2", env=env)
    try:
        first = [json.loads(_next_line(lines, proc))["message"] for _ in range(2)]
        assert first == ["an hour ahead", "far future"]

        async def write() -> None:
            async with DatabaseManager(url=db_url) as db:
                await db.create_agent_log(ids["a1"], "now")
                await db.create_agent_log(ids["a1"], "back-dated",
                                          created_at="2001-01-01T00:00:00Z")
                await db.create_agent_log(ids["a2"], "other agent: filtered out")
                await db.create_agent_logs([
                    {"agent_id": ids["a1"], "message": f"batch {i}"} for i in range(2)])
        asyncio.run(write())
        live = [json.loads(_next_line(lines, proc))["message"] for _ in range(4)]
        assert live == ["now", "back-dated", "batch 0", "batch 1"]
    finally:
        err = interrupt(proc)
    assert proc.returncode == 0, err
    assert lines.empty()  # nothing twice, nothing from the other agent
    assert "Traceback" not in err


def test_logs_follow_spells_out_control_characters(db_url: str) -> None:
    ids = sample_data(db_url)

    async def write_ahead() -> None:
        async with DatabaseManager(url=db_url) as db:
            await db.create_agent_log(ids["a2"], "ahead", created_at="9999-12-31T23:59:59Z")
    asyncio.run(write_ahead())
    proc, lines = _follow("--url", db_url, "-n", "1", env={**os.environ, "COLUMNS": "200"})
    try:
        assert _next_line(lines, proc).endswith(f" builder {ids['a2'][-8:]} event  ahead\n")

        async def write() -> None:
            async with DatabaseManager(url=db_url) as db:
                await db.create_agent_log(
                    ids["a1"], "title \x1b]0;pwned\x07 [bold red]red[/bold red]\nnext\x9b",
                    created_at="2026-01-02T03:04:05Z")
        asyncio.run(write())
        assert _next_line(lines, proc) == (
            f"2026-01-02 03:04:05.000 INFO     plan {ids['a1'][-8:]} event  title "
            "\\x1b]0;pwned\\x07 [bold red]red[/bold red]\\nnext\\x9b\n")
    finally:
        err = interrupt(proc)
    assert proc.returncode == 0, err
    assert lines.empty()
