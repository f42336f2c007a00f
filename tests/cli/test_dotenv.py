"""`.env` in the working directory is read; the process environment wins (issue 13, item 4).

The generated ``.env.sample`` says "copy to .env and adjust": before, nothing read it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator_db import DatabaseManager

SETTINGS = ("DATABASE_URL", "ORCHESTRATOR_DB_PATH", "DATABASE_PATH", "ORCHESTRATOR_HOST",
            "ORCHESTRATOR_PORT", "ORCHESTRATOR_API_TOKEN")


def cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return subprocess.run([sys.executable, "-m", "orchestrator_db.cli", *args], cwd=cwd,
                          env={**clean, **env, "COLUMNS": "200"}, capture_output=True,
                          text=True, timeout=60)


def test_library_reads_dotenv_and_the_environment_wins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert DatabaseManager().target.path == Path("data/orchestrator.db")
    (tmp_path / ".env").write_text('# copied from .env.sample\nORCHESTRATOR_DB_PATH="var/x.db"\n')
    assert DatabaseManager().target.path == Path("var/x.db")
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://me@db.internal/orch\n")
    assert DatabaseManager().target.display() == "postgresql://me@db.internal/orch"
    monkeypatch.setenv("DATABASE_URL", "sqlite:///from-env.db")
    assert DatabaseManager().target.path == Path("from-env.db")
    assert DatabaseManager("explicit.db").target.path == Path("explicit.db")


def test_cli_reads_dotenv_for_the_database_and_serve_options(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ORCHESTRATOR_DB_PATH=var/from-dotenv.db\n"
                                   "ORCHESTRATOR_HOST=0.0.0.0\n")
    created = cli(tmp_path, "upgrade")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created the database at var/from-dotenv.db")
    assert (tmp_path / "var/from-dotenv.db").is_file()
    # ORCHESTRATOR_HOST from .env: off loopback without a token, serve refuses in one line
    refused = cli(tmp_path, "serve", "--port", "0")
    assert refused.returncode == 1
    assert "0.0.0.0" in refused.stderr and "without a token" in refused.stderr
    # the environment wins over .env
    mine = cli(tmp_path, "upgrade", ORCHESTRATOR_DB_PATH="mine.db")
    assert mine.stdout.startswith("created the database at mine.db"), mine.stdout
