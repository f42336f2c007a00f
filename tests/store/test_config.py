"""Where the database is: url › db_path › DATABASE_URL › ORCHESTRATOR_DB_PATH › default."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator_db import DatabaseManager, Dialect, OrchestratorDBError, ValidationError
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


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u@h/db?password=secretpw", "postgresql://u@h/db?password=***"),
    ("postgresql://u:secret1@h/db?sslmode=require&sslpassword=secret2&passfile=/p/.pgpass"
     "&PassWord=secret3", "postgresql://u:***@h/db?sslmode=require&sslpassword=***"
     "&passfile=/p/.pgpass&PassWord=***"),
    ("postgresql://u:se@cret@h/db?pass%77ord=secret", "postgresql://u:***@h/db?pass%77ord=***"),
])
def test_query_passwords_are_hidden(url: str, shown: str) -> None:
    assert resolve_target(url=url).display() == shown


async def test_connection_error_hides_a_query_password() -> None:
    with pytest.raises(OrchestratorDBError, match=r"127\.0\.0\.1:1/x\?password=\*\*\*") as info:
        async with DatabaseManager(url="postgresql://postgres@127.0.0.1:1/x?password=secretpw"):
            pass
    assert "secretpw" not in str(info.value)


async def test_stats_hide_a_query_password(pg_url: str) -> None:
    async with DatabaseManager(url=f"{pg_url}&password=secretpw") as db:
        location = (await db.stats())["location"]
    assert location.endswith("&password=***") and "secretpw" not in location


@pytest.mark.parametrize("seconds", ["3", "2.5", "0"])
async def test_connect_timeout_is_taken_by_the_driver(pg_url: str, seconds: str) -> None:
    async with DatabaseManager(url=f"{pg_url}&connect_timeout={seconds}") as db:
        await db.create_system_log("connected")
        assert [r["message"] for r in await db.list_system_logs()] == ["connected"]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a server that hangs)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


async def test_connect_timeout_ends_the_wait(silent_server: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{silent_server}/x?connect_timeout=1"
    started = time.monotonic()
    with pytest.raises(OrchestratorDBError, match=r"no connection within 1(\.0)? s") as info:
        async with DatabaseManager(url=url):
            pass
    assert time.monotonic() - started < 30
    assert str(info.value).startswith(f"cannot connect to PostgreSQL at {url}: ")


@pytest.mark.parametrize("value", ["abc", "", "nan", "1s"])
def test_bad_connect_timeout_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match=f"connect_timeout must be a number of seconds.*"
                                              f"got '{value}'"):
        DatabaseManager(url=f"postgresql://u@h/db?connect_timeout={value}")


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://u@h/db?password", "query field 'password' has no value"),
    ("postgresql://u:secret/db", "the port is not a number"),
])
def test_malformed_postgres_urls_are_refused_without_values(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        resolve_target(url=url)
    assert "secret" not in str(info.value)


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
