"""Messages say what happened, in the CLI's words (issue 13, item 5)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cli_helpers import invoke, run, sample_data

from dbhelpers import sqlite_at_old_schema
from orchestrator_db.config import Dialect
from orchestrator_db.store.migrations import load_migrations

NEWEST = load_migrations(Dialect.SQLITE)[-1].version


def test_upgrade_says_created_then_already_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "data" / "o.db"
    first = run("upgrade", "--db", str(path))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"created the database at {path} (schema version {NEWEST})"
    again = run("upgrade", "--db", str(path))
    assert again.stdout.strip() == f"{path} is already up to date (version {NEWEST})"


def test_upgrade_says_migrated_from_and_to(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    sqlite_at_old_schema(path, 3)  # a database made by a release that had migrations 1-3
    result = run("upgrade", "--db", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"migrated {path} from version 3 to {NEWEST}"


@pytest.mark.parametrize("version", [3, 4])  # 4 adds columns: it failed with "duplicate column"
def test_upgrade_says_which_missing_migration_it_applied(tmp_path: Path, version: int) -> None:
    """The newest version was recorded but an older one was not: it used to say "already up to
    date" while it applied that one."""
    path = tmp_path / "o.db"
    assert run("upgrade", "--db", str(path)).returncode == 0
    with sqlite3.connect(path) as conn:
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        conn.execute("DELETE FROM schema_migrations WHERE version = ?", (version,))
    conn.close()
    result = run("upgrade", "--db", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"applied migration(s) {version} that {path} lacked "
                                     f"(version {NEWEST})")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name"
                            ).fetchall() == schema
    conn.close()
    again = run("upgrade", "--db", str(path))
    assert again.stdout.strip() == f"{path} is already up to date (version {NEWEST})"


def test_errors_name_the_options_not_the_python_parameters(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    sample_data(f"sqlite:///{db}")
    level = invoke("logs", "--level", "LOUD", "--db", str(db))
    assert level.exit_code == 1
    assert level.stderr.startswith("error: --level must be one of DEBUG, INFO"), level.stderr
    assert "min_level" not in level.stderr
    older = invoke("prune", "--older-than", "soonish", "--db", str(db))
    assert older.stderr.startswith("error: --older-than must be"), older.stderr
    assert "older_than" not in older.stderr
    other = tmp_path / "other.db"
    sample_data(f"sqlite:///{other}")
    merge = run("copy", str(db), str(other))
    assert "pass --merge to add the source's rows" in merge.stderr, merge.stderr
    assert "merge=True" not in merge.stderr


def test_export_counts_one_row_in_the_singular(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    sample_data(f"sqlite:///{db}")
    result = invoke("export", "--db", str(db), "--table", "system_logs")
    assert result.exit_code == 0, result.output
    assert "exported 1 row of system_logs" in result.stderr
    assert "1 rows" not in result.stderr
