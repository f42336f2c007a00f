"""Stored text is untrusted: the CLI shows its control characters spelled out, never obeys them,
and never reads it as Rich markup; --json gives it back as it is (escaped by JSON)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import invoke

from orchestrator_db import DatabaseManager
from orchestrator_db.config import Dialect
from orchestrator_db.store.migrations import load_migrations

# What a terminal would obey: C0 controls but the line breaks between lines of output, DEL, C1.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
OA_NAME = "esc\x1b[2J [bold red]oa[/bold red]"
SESSION = "sess\x1b]0;pwned\x07"
MODEL = "m\x1b[31m"
MESSAGE = ("title \x1b]0;pwned\x07 clear \x1b[2J [bold red]red[/bold red] :smile: "
           "a\tb\nc\rd\x7f\x9b\u202e")
WHEN = "2026-01-02T03:04:05Z"


def _hostile_data(url: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with DatabaseManager(url=url) as db:
            oa = await db.create_orchestrator_agent(OA_NAME, default_model="[i]dm\x9b[/i]")
            agent = await db.create_agent(oa, SESSION, model=MODEL)
            named = await db.create_agent(oa, "[red]plain[/red]", name="n\x1b[1m[u]x[/u]")
            await db.create_agent_log(agent, MESSAGE, log_type="step\x1b[1m", created_at=WHEN,
                                      details={"k": "\x9b\x1b"})
            await db.create_system_log("sys \x1b[2J [blink]x[/blink]", source="src\x1b[31m",
                                       created_at=WHEN)
            return {"oa": oa, "agent": agent, "named": named}
    return asyncio.run(go())


@pytest.fixture
def hostile(db_url: str) -> dict[str, Any]:
    return {"url": db_url, **_hostile_data(db_url)}


def _out(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert not RAW_CONTROL.search(result.stdout), repr(result.stdout)
    return str(result.stdout)


def test_log_lines_spell_out_control_characters_and_keep_markup_literal(
        hostile: dict[str, Any]) -> None:
    out = _out("logs", "--url", hostile["url"])
    assert out == (
        "2026-01-02 03:04:05.000 INFO     esc\\x1b[2J [bold red]oa[/bold red] "
        f"{hostile['agent'][-8:]} step\\x1b[1m  title \\x1b]0;pwned\\x07 clear \\x1b[2J "
        "[bold red]red[/bold red] :smile: a\\tb\\nc\\rd\\x7f\\x9b\\u202e "
        '{"k": "\\x9b\\u001b"}\n')
    system = _out("logs", "--url", hostile["url"], "--system")
    assert system == ("2026-01-02 03:04:05.000 INFO     src\\x1b[31m  sys \\x1b[2J "
                      "[blink]x[/blink]\n")


def test_logs_json_gives_the_stored_text_back_unchanged(hostile: dict[str, Any]) -> None:
    result = invoke("logs", "--url", hostile["url"], "--json")
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["message"] == MESSAGE and row["log_type"] == "step\x1b[1m"
    assert row["details"] == {"k": "\x9b\x1b"}
    assert "\\u001b]0;pwned\\u0007" in result.stdout  # JSON's own escapes, as before
    # ... and DEL, C1 and bidi controls, which JSON would leave raw: none reaches the terminal.
    assert '"\\u009b\\u001b"' in result.stdout and "\x9b" not in result.stdout


def test_agents_table_spells_out_control_characters(hostile: dict[str, Any]) -> None:
    out = _out("agents", "--url", hostile["url"])
    assert (f"│ {hostile['named']} │ n\\x1b[1m[u]x[/u] (esc\\x1b[2J [bold red]oa[/bold red]) │ "
            "[red]plain[/red]     │           │ pending │") in out
    assert (f"│ {hostile['agent']} │ esc\\x1b[2J [bold red]oa[/bold red]                    │ "
            "sess\\x1b]0;pwned\\x07 │ m\\x1b[31m │ pending │") in out
    definitions = _out("agents", "--url", hostile["url"], "--definitions")
    assert (f"│ {hostile['oa']} │ esc\\x1b[2J [bold red]oa[/bold red] │      │ [i]dm\\x9b[/i] │ "
            "active │") in definitions


def test_agents_json_is_unchanged(hostile: dict[str, Any]) -> None:
    result = invoke("agents", "--url", hostile["url"], "--json")
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert rows[hostile["agent"]]["session_id"] == SESSION
    assert rows[hostile["agent"]]["model"] == MODEL


def test_sessions_table_spells_out_control_characters(hostile: dict[str, Any]) -> None:
    out = _out("sessions", "--url", hostile["url"])
    assert "│ sess\\x1b]0;pwned\\x07 │      1 │ pending │" in out
    assert "│ [red]plain[/red]     │      1 │ pending │" in out
    as_json = json.loads(invoke("sessions", "--url", hostile["url"], "--json").stdout)
    assert {s["session_id"] for s in as_json} == {SESSION, "[red]plain[/red]"}


def test_locations_and_errors_spell_out_control_characters(tmp_path: Path) -> None:
    weird = tmp_path / "a\x1b[2J[bold]b[/bold].db"
    _hostile_data(f"sqlite:///{weird}")
    shown = str(weird).replace("\x1b", "\\x1b")
    out = _out("stats", "--db", str(weird))
    assert f"│ location            │ {shown} │" in out
    newest = load_migrations(Dialect.SQLITE)[-1].version
    assert _out("upgrade", "--db", str(weird)) == \
        f"{shown} is already up to date (version {newest})\n"
    snapshot = tmp_path / "snap\x07[i]x[/i].db"
    backed_up = _out("backup", str(snapshot), "--db", str(weird))
    assert backed_up.startswith(f"backed up to {tmp_path}/snap\\x07[i]x[/i].db (")

    missing = invoke("logs", "--db", str(tmp_path / "no\x1b[31m[red]such[/red].db"))
    assert missing.exit_code == 1
    assert missing.stderr.startswith(
        f"error: no database at {tmp_path}/no\\x1b[31m[red]such[/red].db;")
    assert not RAW_CONTROL.search(missing.stderr)
