"""backup / restore: a consistent SQLite snapshot while another process keeps writing."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dbhelpers import sqlite_at_old_schema
from orchestrator_db import DatabaseManager, OrchestratorDBError
from orchestrator_db.config import Dialect
from orchestrator_db.errors import DuplicateError, SchemaError, ValidationError
from orchestrator_db.store.migrations import load_migrations

# Inserts one log line per commit until killed, printing the count of committed rows now and then.
WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from orchestrator_db import DatabaseManager

    async def main():
        async with DatabaseManager(sys.argv[1]) as db:
            oa = await db.create_orchestrator_agent("writer")
            agent = await db.create_agent(oa, "s-backup")
            n = 0
            while True:
                await db.create_agent_log(agent, f"line {n}", details={"n": n})
                n += 1
                if n % 50 == 0:
                    print(n, flush=True)

    asyncio.run(main())
    """
)


def _messages(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {m for (m,) in conn.execute("SELECT message FROM agent_logs")}
    finally:
        conn.close()


async def test_backup_while_a_process_writes_holds_every_committed_row(tmp_path: Path) -> None:
    source = tmp_path / "live.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(source)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        for line in writer.stdout:  # wait until it has committed a good number of rows
            if int(line) >= 500:
                break
        async with DatabaseManager(source) as db:
            before = {r["message"] for r in await db.list_agent_logs(limit=1000)}
            snapshot = await db.backup(tmp_path / "snapshots" / "one.db")
        assert writer.poll() is None, "the writer must still be running: an online backup"
    finally:
        writer.kill()
        writer.communicate()
    conn = sqlite3.connect(snapshot)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    copied = _messages(snapshot)
    assert len(before) >= 500
    assert before <= copied, "a row committed before the backup started is missing"
    # The snapshot is one consistent moment: every line up to its newest, none skipped.
    numbers = sorted(int(m.split()[1]) for m in copied)
    assert numbers == list(range(len(numbers)))


async def test_restore_round_trips_and_refuses_to_overwrite_silently(tmp_path: Path) -> None:
    async with DatabaseManager(tmp_path / "a.db") as db:
        oa = await db.create_orchestrator_agent("planner", metadata={"k": [1, 2]})
        agent = await db.create_agent(oa, "s-1", model="opus")
        await db.create_agent_logs([{"agent_id": agent, "message": f"m{i}"} for i in range(20)])
        original = {t: await getattr(db, f"list_{t}")(limit=1000)
                    for t in ("orchestrator_agents", "agents", "agent_logs")}
        snapshot = await db.backup(tmp_path / "a-snapshot.db")
        with pytest.raises(DuplicateError, match="never overwrites"):
            await db.backup(snapshot)
        # Refused while the database holds records, done with force=True.
        await db.create_agent_log(agent, "written after the backup")
        with pytest.raises(ValidationError, match="force"):
            await db.restore(snapshot)
        await db.restore(snapshot, force=True)
        assert [r["message"] for r in await db.list_agent_logs(limit=1000)] == [
            f"m{i}" for i in range(20)]
    async with DatabaseManager(tmp_path / "b.db") as fresh:
        await fresh.restore(snapshot)
        for table, rows in original.items():
            assert await getattr(fresh, f"list_{table}")(limit=1000) == rows


async def test_restore_refuses_a_file_that_is_not_a_backup(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    async with DatabaseManager(tmp_path / "c.db") as db:
        with pytest.raises(SchemaError, match="not an orchestrator-db backup"):
            await db.restore(other)
        with pytest.raises(OrchestratorDBError, match="no backup at"):
            await db.restore(tmp_path / "missing.db")


async def test_postgresql_says_what_to_use_instead(pg_url: str, tmp_path: Path) -> None:
    async with DatabaseManager(url=pg_url) as db:
        with pytest.raises(OrchestratorDBError, match="pg_dump"):
            await db.backup(tmp_path / "x.db")
        with pytest.raises(OrchestratorDBError, match="pg_restore"):
            await db.restore(tmp_path / "x.db")
    assert not (tmp_path / "x.db").exists()


def test_cli_backup_and_restore(tmp_path: Path) -> None:
    source, snapshot, target = tmp_path / "s.db", tmp_path / "snap.db", tmp_path / "t.db"

    async def fill() -> None:
        async with DatabaseManager(source) as db:
            oa = await db.create_orchestrator_agent("p")
            await db.create_agent(oa, "s")
    asyncio.run(fill())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator_db.cli", *args],
                              capture_output=True, text=True, timeout=120)

    done = cli("backup", str(snapshot), "--db", str(source))
    assert done.returncode == 0, done.stderr
    assert f"backed up to {snapshot}" in done.stdout
    again = cli("backup", str(snapshot), "--db", str(source))
    assert again.returncode == 1 and again.stderr.count("\n") == 1
    assert "already exists" in again.stderr
    restored = cli("restore", str(snapshot), "--db", str(target))
    assert restored.returncode == 0, restored.stderr
    assert "restored" in restored.stdout and "2 records" in restored.stdout


async def _two_databases(tmp_path: Path) -> tuple[Path, Path]:
    """A snapshot of a database holding agent "snap", and a target holding agent "kept"."""
    source, snapshot, target = tmp_path / "s.db", tmp_path / "snap.db", tmp_path / "t.db"
    for path, name in ((source, "snap"), (target, "kept")):
        async with DatabaseManager(path) as db:
            await db.create_agent(await db.create_orchestrator_agent(name), "s")
    async with DatabaseManager(source) as db:
        await db.backup(snapshot)
    return snapshot, target


def _names(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [n for (n,) in conn.execute("SELECT name FROM orchestrator_agents")]
    finally:
        conn.close()


async def test_restore_refuses_a_newer_snapshot_before_replacing_anything(tmp_path: Path) -> None:
    snapshot, target = await _two_databases(tmp_path)
    conn = sqlite3.connect(snapshot)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', '2027-01-01T00:00:00+00:00')")
    conn.commit()
    conn.close()
    async with DatabaseManager(target) as db:
        with pytest.raises(SchemaError, match=r"holds schema version 99, newer than this "
                                              r"orchestrator-db .*nothing was restored"):
            await db.restore(snapshot, force=True)
        assert [a["name"] for a in await db.list_orchestrator_agents()] == ["kept"]
    assert _names(target) == ["kept"]
    # the command says the same, and the target stays usable
    result = subprocess.run([sys.executable, "-m", "orchestrator_db.cli", "restore",
                             str(snapshot), "--db", str(target), "--force"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "newer than this orchestrator-db" in result.stderr
    assert _names(target) == ["kept"]


@pytest.mark.parametrize("statements", [
    ["CREATE TABLE schema_migrations (version text, name text)",
     "INSERT INTO schema_migrations VALUES ('abc', 'x')"],
    ["CREATE TABLE schema_migrations (version INTEGER, name TEXT, applied_at TEXT)"],
    ["CREATE TABLE schema_migrations (version INTEGER, name TEXT, applied_at TEXT)",
     "INSERT INTO schema_migrations VALUES (1, 'initial', 'x')",
     "CREATE TABLE agents (id TEXT, foo TEXT)"],
], ids=["other-columns", "no-versions", "other-tables"])
async def test_restore_refuses_a_database_of_another_program(tmp_path: Path,
                                                             statements: list[str]) -> None:
    _, target = await _two_databases(tmp_path)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    async with DatabaseManager(target) as db:
        with pytest.raises(SchemaError, match="not an orchestrator-db|not the ones"):
            await db.restore(other, force=True)
        assert [a["name"] for a in await db.list_orchestrator_agents()] == ["kept"]
    assert _names(target) == ["kept"]


async def test_restore_of_an_older_snapshot_migrates_it_on_a_copy(tmp_path: Path) -> None:
    _, target = await _two_databases(tmp_path)
    old = tmp_path / "old.db"
    sqlite_at_old_schema(old, 3)
    async with DatabaseManager(target) as db:
        await db.restore(old, force=True)
        assert await db.list_orchestrator_agents() == []
        assert await db.schema_version() == len(load_migrations(Dialect.SQLITE))
    conn = sqlite3.connect(old)
    try:  # the snapshot itself is not changed
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == 3
    finally:
        conn.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".restore-")]
