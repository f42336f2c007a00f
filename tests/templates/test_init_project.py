"""orchestrator-db init: the files it writes, never overwriting, dry runs, re-runs."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import orchestrator_db
from orchestrator_db import render_sqlite_schema
from orchestrator_db.cli import app

FILES = [
    "adws/__init__.py",
    "adws/adw_database.py",
    "adws/adw_modules/__init__.py",
    "adws/adw_modules/adw_database.py",
    "adws/adw_modules/orch_database_models.py",
    "adws/schema/schema_orchestrator.sqlite",
    "adws/schema/README.md",
    "data/.gitignore",
    ".env.sample",
    "scripts/setup_database.sh",
]


def init(*args: str) -> object:
    return CliRunner().invoke(app, ["init", *args], catch_exceptions=False,
                              env={"COLUMNS": "200"})


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_init_writes_every_file(tmp_path: Path) -> None:
    root = tmp_path / "project"
    result = init(str(root))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    for name in FILES:
        assert (root / name).is_file(), name
        assert f"created │ {name}" in result.stdout or name in result.stdout  # type: ignore[attr-defined]
    assert sorted(snapshot(root)) == sorted(FILES)
    # The schema file is the package's migrations, never a hand-made copy.
    assert (root / "adws/schema/schema_orchestrator.sqlite").read_text() == render_sqlite_schema()
    assert (root / "data/.gitignore").read_text().splitlines()[1] == "*.db"
    mode = (root / "scripts/setup_database.sh").stat().st_mode
    assert mode & stat.S_IXUSR and mode & stat.S_IXOTH
    header = (root / "adws/adw_database.py").read_text().splitlines()[:6]
    assert header[0] == "# /// script" and "#     \"orchestrator-db>=" in header[3]
    assert "# ///" in header
    env = (root / ".env.sample").read_text()
    for key in ("ORCHESTRATOR_DB_PATH=data/orchestrator.db", "# DATABASE_URL=postgresql://",
                "ORCHESTRATOR_PORT=", "ORCHESTRATOR_API_TOKEN="):
        assert key in env, key


def test_env_sample_sets_only_what_the_package_reads(tmp_path: Path) -> None:
    """Every variable .env.sample names is read by orchestrator-db (none is decoration)."""
    init(str(tmp_path), "--engine", "postgres")
    names = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (tmp_path / ".env.sample").read_text(),
                           re.MULTILINE))
    assert {"ORCHESTRATOR_DB_PATH", "DATABASE_URL", "ORCHESTRATOR_HOST", "ORCHESTRATOR_PORT",
            "ORCHESTRATOR_API_TOKEN"} <= names
    package = Path(orchestrator_db.__file__).parent
    source = "\n".join(f.read_text() for f in package.rglob("*.py"))
    for name in names:
        assert f'"{name}"' in source, f"{name} is in .env.sample but nothing reads it"


def test_rerun_changes_nothing(tmp_path: Path) -> None:
    init(str(tmp_path))
    before = snapshot(tmp_path)
    result = init(str(tmp_path))
    assert result.exit_code == 0
    assert snapshot(tmp_path) == before  # same bytes, not even rewritten
    assert result.stdout.count("unchanged") == len(FILES)  # type: ignore[attr-defined]


def test_existing_files_are_skipped_unless_force(tmp_path: Path) -> None:
    init(str(tmp_path))
    mine = tmp_path / ".env.sample"
    mine.write_text("MY_SETTINGS=1\n")
    package_init = tmp_path / "adws/__init__.py"
    package_init.write_text('"""My ADWs."""\nVERSION = 2\n')

    result = init(str(tmp_path))
    assert result.exit_code == 0
    assert mine.read_text() == "MY_SETTINGS=1\n"
    assert "skipped 1 existing file(s) that differ: .env.sample" in result.stdout  # type: ignore[attr-defined]

    result = init(str(tmp_path), "--force")
    assert result.exit_code == 0
    assert "ORCHESTRATOR_DB_PATH" in mine.read_text()
    assert "overwritten" in result.stdout  # type: ignore[attr-defined]
    # A package's __init__.py is the user's once it exists: kept even with --force.
    assert package_init.read_text() == '"""My ADWs."""\nVERSION = 2\n'
    assert "kept (yours)" in result.stdout  # type: ignore[attr-defined]


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "project"
    result = init(str(root), "--dry-run")
    assert result.exit_code == 0
    assert not root.exists()
    assert result.stdout.count("would create") == len(FILES)  # type: ignore[attr-defined]
    (root / "data").mkdir(parents=True)
    (root / "data/.gitignore").write_text("mine\n")
    result = init(str(root), "--dry-run", "--force")
    assert "would overwrite" in result.stdout  # type: ignore[attr-defined]
    assert (root / "data/.gitignore").read_text() == "mine\n"
    assert sorted(p.name for p in root.rglob("*")) == [".gitignore", "data"]


def test_postgres_engine_and_custom_paths(tmp_path: Path) -> None:
    result = init(str(tmp_path), "--engine", "postgres", "--db", "var/orch.db",
                  "--postgres-url", "postgresql://me@db.internal/orch")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    env = (tmp_path / ".env.sample").read_text()
    assert "\nDATABASE_URL=postgresql://me@db.internal/orch\n" in env
    assert "ORCHESTRATOR_DB_PATH=var/orch.db" in env
    assert 'DEFAULT_DB_PATH = "var/orch.db"' in (tmp_path / "adws/adw_database.py").read_text()
    assert "var/orch.db" in (tmp_path / "scripts/setup_database.sh").read_text()
    # The database's folder is the one git must ignore; no empty data/ is left behind. And
    # nothing reads .env.sample: the next step says to copy it, or the defaults would be used.
    assert (tmp_path / "var/.gitignore").read_text().splitlines()[1] == "*.db"
    assert not (tmp_path / "data").exists()
    assert "&& cp .env.sample .env && scripts/setup_database.sh" in result.stdout  # type: ignore[attr-defined]


@pytest.mark.parametrize(("args", "hint"), [((), False), (("--db", "data/orchestrator.db"), False),
                                            (("--engine", "postgres"), True),
                                            (("--db", "state/x.db"), True)])
def test_the_next_step_copies_env_sample_when_it_differs_from_the_defaults(
        tmp_path: Path, args: tuple[str, ...], hint: bool) -> None:
    result = init(str(tmp_path), *args)
    assert ("cp .env.sample .env" in result.stdout) is hint  # type: ignore[attr-defined]
    (tmp_path / ".env").write_text("ORCHESTRATOR_DB_PATH=state/x.db\n")
    again = init(str(tmp_path), *args, "--force")
    assert "cp .env.sample .env" not in again.stdout  # type: ignore[attr-defined]


def test_a_database_in_the_project_root_keeps_the_projects_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("node_modules/\n")
    result = init(str(tmp_path), "--db", "orch.db")
    assert (tmp_path / ".gitignore").read_text() == "node_modules/\n"
    assert "your .gitignore was kept: add the database files to it (*.db, *.db-wal" in \
        result.stdout  # type: ignore[attr-defined]
    other = tmp_path / "fresh"
    init(str(other), "--db", "orch.db")
    assert (other / ".gitignore").read_text().splitlines()[1] == "*.db"
    outside = tmp_path / "outside"
    init(str(outside), "--db", "/var/lib/orch/orch.db")
    assert not (outside / "data").exists() and not (outside / ".gitignore").exists()


def test_unsafe_db_path_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["init", str(tmp_path), "--db", 'a"; rm -rf /'])
    assert result.exit_code == 1
    assert "--db must be a plain path" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_db_path_is_still_accepted_but_hidden(tmp_path: Path) -> None:
    """`init` takes --db like every command; the old --db-path still works, unlisted."""
    result = init(str(tmp_path), "--db-path", "var/old.db")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert 'DEFAULT_DB_PATH = "var/old.db"' in (tmp_path / "adws/adw_database.py").read_text()
    help_text = CliRunner().invoke(app, ["init", "--help"], env={"COLUMNS": "200"}).stdout
    assert "--db " in help_text and "--db-path" not in help_text


def test_generated_python_passes_ruff(tmp_path: Path) -> None:
    init(str(tmp_path))
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment")
    result = subprocess.run([str(ruff), "check", "--isolated", "--select", "E,F,W,I,B,UP",
                             "--line-length", "100", "adws"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_permission_problem_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "adws").write_text("a file where a directory should be")
    result = CliRunner().invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the project")
    assert os.listdir(tmp_path) == ["adws"]


def test_the_generated_usage_example_runs_twice(tmp_path: Path) -> None:
    # What a user copies first from adws/adw_database.py: it must run again unchanged.
    root = tmp_path / "project"
    assert init(str(root)).exit_code == 0  # type: ignore[attr-defined]
    doc = (root / "adws/adw_database.py").read_text()
    block = doc.split("Usage::\n", 1)[1].split("\n\nPlain synchronous", 1)[0]
    example = "\n".join(line[4:] for line in block.splitlines())
    (root / "example.py").write_text(example)
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("DATABASE_URL", None)
    env.pop("ORCHESTRATOR_DB_PATH", None)
    for _ in range(2):
        done = subprocess.run([sys.executable, "example.py"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert (root / "data/orchestrator.db").is_file()
