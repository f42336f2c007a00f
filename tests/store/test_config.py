"""Where the database is: url › db_path › DATABASE_URL › ORCHESTRATOR_DB_PATH › default."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator_db import DatabaseManager, Dialect, ValidationError
from orchestrator_db.config import resolve_target


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_DB_PATH", raising=False)
    assert resolve_target().path == Path("data/orchestrator.db")
    monkeypatch.setenv("ORCHESTRATOR_DB_PATH", "/tmp/env.db")
    assert resolve_target().path == Path("/tmp/env.db")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert resolve_target().dialect is Dialect.POSTGRES
    assert resolve_target("explicit.db").path == Path("explicit.db")
    assert resolve_target("explicit.db", url="sqlite:////abs/x.db").path == Path("/abs/x.db")


@pytest.mark.parametrize(
    ("url", "dialect", "path"),
    [
        ("sqlite:///data/o.db", Dialect.SQLITE, "data/o.db"),
        ("sqlite:////var/o.db", Dialect.SQLITE, "/var/o.db"),
        ("postgres://u:p@h:5432/db", Dialect.POSTGRES, None),
        ("postgresql+asyncpg://u@h/db", Dialect.POSTGRES, None),
        ("plain/file.db", Dialect.SQLITE, "plain/file.db"),
    ],
)
def test_parse(url: str, dialect: Dialect, path: str | None) -> None:
    target = resolve_target(url=url)
    assert target.dialect is dialect
    assert target.path == (Path(path) if path else None)


def test_password_is_hidden() -> None:
    assert "secret" not in resolve_target(url="postgresql://u:secret@h/db").display()


@pytest.mark.parametrize("url", ["mysql://h/db", "sqlite://", "sqlite:///:memory:", "  "])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValidationError):
        resolve_target(url=url)


async def test_env_path_and_parent_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    target = tmp_path / "deep" / "er" / "o.db"
    monkeypatch.setenv("ORCHESTRATOR_DB_PATH", str(target))
    async with DatabaseManager() as db:
        await db.create_system_log("hello")
        mode = (await db.store.fetch("PRAGMA journal_mode"))[0]["journal_mode"]
        fk = (await db.store.fetch("PRAGMA foreign_keys"))[0]["foreign_keys"]
    assert target.exists()
    assert mode == "wal" and fk == 1


async def test_default_path_is_data_orchestrator_db(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_DB_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    async with DatabaseManager() as db:
        assert db.db_path == "data/orchestrator.db"
    assert (tmp_path / "data" / "orchestrator.db").exists()
