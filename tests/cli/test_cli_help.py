"""Every command has --help with examples, in-process and as the installed command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import invoke, run

MINE = ["init", "sessions", "agents", "logs", "export", "prune", "copy"]
ALL = ["upgrade", "current", "stats", *MINE]


def test_root_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ALL:
        assert name in result.stdout


@pytest.mark.parametrize("command", ALL)
def test_each_command_has_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert "--url" in result.stdout or command in ("init", "copy")
    if command in MINE:
        assert "Examples:" in result.stdout
        assert f"orchestrator-db {command}" in result.stdout


def test_global_url_and_db_options_on_database_commands() -> None:
    for command in ["stats", "sessions", "agents", "logs", "export", "prune", "copy"]:
        out = invoke(command, "--help").stdout
        assert "--url" in out and "--db" in out, command


def test_python_dash_m_and_console_script() -> None:
    result = run("--help")
    assert result.returncode == 0 and "copy" in result.stdout
    script = Path(sys.executable).parent / "orchestrator-db"
    exe = str(script) if script.exists() else shutil.which("orchestrator-db")
    if exe is None:
        pytest.skip("the orchestrator-db console script is not installed")
    result = subprocess.run([exe, "logs", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--follow" in result.stdout
