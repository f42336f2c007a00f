"""Every error is one readable line on stderr and exit code 1; --debug shows the traceback."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import run, sample_data


def one_error_line(result, *expected: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.fixture
def db_file(tmp_path: Path) -> str:
    path = tmp_path / "data" / "orchestrator.db"
    sample_data(f"sqlite:///{path}")
    return str(path)


CASES: dict[str, Callable[[Path, str], tuple[list[str], list[str]]]] = {
    "bad URL scheme": lambda tmp, db: (["stats", "--url", "mysql://u@h/db"],
                                       ["unsupported database URL scheme 'mysql'"]),
    "unreachable PostgreSQL": lambda tmp, db: (
        ["sessions", "--url", "postgresql://postgres@127.0.0.1:9/nowhere"],
        ["cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:9/nowhere"]),
    "database directory cannot be made": lambda tmp, db: (
        ["upgrade", "--db", str(tmp / "a-file" / "sub" / "x.db")], ["cannot create the directory"]),
    "read-only command on a missing database": lambda tmp, db: (
        ["stats", "--db", str(tmp / "typo" / "x.db")], ["no database at", "orchestrator-db upgrade"]),
    "bad --older-than": lambda tmp, db: (["prune", "--older-than", "soonish", "--db", db],
                                         ["--older-than must be", "'30d'"]),
    "prune: unknown table": lambda tmp, db: (
        ["prune", "--older-than", "30d", "--table", "agents", "--db", db], ["--table"]),
    "export: unknown table": lambda tmp, db: (["export", "--table", "nope", "--db", db],
                                              ["nope"]),
    "export: unknown format": lambda tmp, db: (
        ["export", "--table", "agent_logs", "--format", "xml", "--db", db],
        ["--format must be jsonl or csv"]),
    "export: unwritable output": lambda tmp, db: (
        ["export", "--table", "agent_logs", "--db", db, "-o", str(tmp / "no" / "dir" / "x")],
        ["cannot write"]),
    "logs: unknown level": lambda tmp, db: (["logs", "--level", "LOUD", "--db", db],
                                            ["--level must be one of"]),
    "logs: agent id is not a UUID": lambda tmp, db: (["logs", "--agent", "bob", "--db", db],
                                                     ["--agent must be a UUID"]),
    "agents: unknown status": lambda tmp, db: (["agents", "--status", "asleep", "--db", db],
                                               ["--status must be one of"]),
    "init: unknown engine": lambda tmp, db: (["init", str(tmp / "p"), "--engine", "mysql"],
                                             ["--engine must be sqlite or postgres"]),
    "init: target is a file": lambda tmp, db: (["init", str(tmp / "a-file")],
                                               ["is not a directory"]),
    "copy: same database": lambda tmp, db: (["copy", db, f"sqlite:///{db}"],
                                            ["same database"]),
    "copy: missing source": lambda tmp, db: (["copy", str(tmp / "nope.db"), str(tmp / "b.db")],
                                             ["does not exist"]),
    "copy: bad destination URL": lambda tmp, db: (["copy", db, "oracle://x"],
                                                  ["unsupported database URL scheme"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_error_is_one_line_and_exit_1(case: str, tmp_path: Path, db_file: str) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    args, expected = CASES[case](tmp_path, db_file)
    one_error_line(run(*args), *expected)


def test_copy_into_a_destination_with_other_data(tmp_path: Path, db_file: str) -> None:
    other = tmp_path / "other.db"
    sample_data(f"sqlite:///{other}")
    one_error_line(run("copy", db_file, str(other)), "not an interrupted copy", "--merge")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_database_directory_without_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        one_error_line(run("stats", "--db", str(locked / "data" / "x.db")), "cannot")
    finally:
        locked.chmod(0o700)


def test_database_path_is_a_directory(tmp_path: Path, db_file: str) -> None:
    # Works as root too: a directory where the database file should be.
    one_error_line(run("upgrade", "--db", str(tmp_path)), "cannot open SQLite database")


@pytest.mark.parametrize("command", [["stats"], ["sessions"], ["logs"], ["current"],
                                     ["export", "--table", "agent_logs"]])
def test_read_only_commands_never_create_a_database(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "typo" / "orchestrator.db"
    one_error_line(run(*command, "--db", str(missing)), f"no database at {missing}")
    assert not missing.parent.exists()


def test_debug_shows_the_traceback() -> None:
    result = run("--debug", "stats", "--url", "mysql://u@h/db")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ValidationError" in result.stderr


def test_long_messages_are_not_wrapped(tmp_path: Path) -> None:
    deep = tmp_path / ("very-long-directory-name-" * 6) / "a-file"
    deep.parent.mkdir(parents=True)
    deep.write_text("x")
    one_error_line(run("stats", "--db", str(deep / "x.db")), str(deep.parent))


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_an_unsafe_serve_is_refused_before_any_banner(tmp_path: Path, command: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRATOR_API_TOKEN", raising=False)
    result = run(command, "--host", "0.0.0.0", "--port", "0", "--db", str(tmp_path / "x.db"))
    one_error_line(result, "refusing to serve on '0.0.0.0' without a token")
    assert result.stdout == "", "a banner was printed before the refusal"
