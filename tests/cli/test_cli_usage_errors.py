"""Usage errors are one red line and exit code 1, like every other error; --version works.

Before, Typer printed its boxed usage text and exited with 2 (issue 13, item 6).
"""

from __future__ import annotations

import pytest
from cli_helpers import invoke, run

from orchestrator_db.version import __version__


@pytest.mark.parametrize(("args", "expected"), [
    (["serve", "--port", "eighty"], "Invalid value for '--port'"),
    (["demo", "--bogus"], "No such option: --bogus"),
    (["serve", "extra-argument"], "Got unexpected extra argument"),
    (["export"], "Missing option '--table'"),
    (["logz"], "No such command 'logz'"),
])
def test_usage_error_is_one_line_and_exit_1(args: list[str], expected: str) -> None:
    result = run(*args)  # the real command: python -m orchestrator_db.cli
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "--help" in lines[0]  # where to look next
    assert "╭" not in result.stderr and "Usage:" not in result.stderr
    assert result.stdout == ""


def test_debug_after_the_command_says_where_it_goes() -> None:
    result = invoke("stats", "--db", "nope.db", "--debug")
    assert result.exit_code == 1
    assert "--debug goes before the command: `orchestrator-db --debug COMMAND ...`" in \
        result.stderr


def test_h_is_help_too() -> None:
    result = invoke("stats", "-h")
    assert result.exit_code == 0 and "Row counts, size, engine and schema version." in \
        result.stdout


def test_in_process_too() -> None:
    result = invoke("serve", "--port", "eighty")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: Invalid value for '--port'")


def test_version() -> None:
    for result in (run("--version"), invoke("--version")):
        out = result.stdout
        assert out.strip() == f"orchestrator-db {__version__}"


def test_bare_command_still_shows_the_help() -> None:
    result = run()
    assert result.returncode == 0
    assert "Usage:" in result.stdout and "upgrade" in result.stdout
    assert result.stdout.count("Usage:") == 1
