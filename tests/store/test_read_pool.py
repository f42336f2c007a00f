"""Reads outside a transaction: read-your-writes, isolation from open transactions, snapshots.

On SQLite these reads run on the store's query-only readers (the inline one and the pool's), not
the writing connection; the same behaviour is checked on both engines. The tests at the end are
about the SQLite readers themselves (closing, the fallback without them).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from orchestrator_db import DatabaseManager
from orchestrator_db.config import resolve_target
from orchestrator_db.store.sqlite import SQLiteStore
from orchestrator_db.store.sqlite_readers import SQLiteReaders

COUNT = "SELECT count(*) AS n FROM system_logs"


async def count(db: DatabaseManager, *, heavy: bool = False) -> int:
    return int((await db.store.fetch(COUNT, heavy=heavy))[0]["n"])


async def test_read_your_writes(db: DatabaseManager) -> None:
    for i in range(30):
        row_id = await db.create_system_log(f"line {i}")
        assert (await db.get_system_log(row_id) or {})["message"] == f"line {i}"
        assert await count(db) == i + 1
        assert await count(db, heavy=True) == i + 1


async def test_read_your_writes_of_a_concurrent_group(db: DatabaseManager) -> None:
    # Writes awaited together share one group commit: once gathered, every read sees them all.
    ids = await asyncio.gather(*(db.create_system_log(f"g{i}") for i in range(20)))
    rows = await asyncio.gather(*(db.get_system_log(i) for i in ids))
    assert [r["message"] for r in rows if r] == [f"g{i}" for i in range(20)]
    assert await count(db, heavy=True) == 20


async def test_reads_outside_do_not_wait_for_an_open_transaction(db: DatabaseManager) -> None:
    await db.create_system_log("committed")
    inside, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.transaction():
            await db.create_system_log("not yet committed")
            inside.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await inside.wait()
    try:
        # Answered while the transaction stays open, without its uncommitted row.
        assert await asyncio.wait_for(count(db), 5) == 1
        assert await asyncio.wait_for(count(db, heavy=True), 5) == 1
        assert await asyncio.wait_for(db.schema_version(), 5) > 0
    finally:
        release.set()
        await task
    assert await count(db) == 2


async def test_heavy_reads_inside_a_transaction_see_its_writes(db: DatabaseManager) -> None:
    async with db.transaction():
        await db.create_system_log("mine")
        assert await count(db, heavy=True) == 1
        assert await count(db) == 1
    assert await count(db, heavy=True) == 1


async def test_snapshot_sees_one_moment_and_does_not_hold_up_writers(db: DatabaseManager) -> None:
    await db.create_system_log("before")
    go, written = asyncio.Event(), asyncio.Event()

    async def writer() -> None:  # started outside the snapshot: it writes on its own
        await go.wait()
        await db.create_system_log("during")
        written.set()

    task = asyncio.create_task(writer())
    async with db.store.snapshot():
        assert await count(db) == 1
        # The write commits while the snapshot is open (not after it).
        go.set()
        await asyncio.wait_for(written.wait(), 5)
        assert await count(db) == 1
        assert await count(db, heavy=True) == 1
    await task
    assert await count(db) == 2


async def test_a_write_inside_a_snapshot_commits_on_its_own_on_both_engines(
        db: DatabaseManager) -> None:
    """The snapshot is for reading: a write inside it (or a transaction opened in it) does not
    join it. It commits at once (PostgreSQL used to refuse it: "read-only transaction"), the
    snapshot keeps its view, and an error ending the block does not take the write back."""
    await db.create_system_log("before")
    with pytest.raises(RuntimeError, match="block fails"):
        async with db.store.snapshot():
            assert await count(db, heavy=True) == 1  # the snapshot is taken
            written = await db.create_system_log("inside")
            async with db.transaction():
                await db.create_system_log("in a transaction inside")
            assert await count(db, heavy=True) == 1  # still the snapshot's view
            raise RuntimeError("the block fails")
    assert await count(db) == 3
    assert (await db.get_system_log(written))["message"] == "inside"


async def test_snapshots_in_parallel(db: DatabaseManager) -> None:
    for i in range(5):
        await db.create_system_log(f"r{i}")

    async def one() -> list[int]:
        async with db.store.snapshot():
            first = await count(db, heavy=True)
            await asyncio.sleep(0)
            return [first, await count(db)]

    results = await asyncio.gather(*(one() for _ in range(8)), db.create_system_log("more"))
    for seen in results[:-1]:
        assert isinstance(seen, list) and seen[0] == seen[1]


# The SQLite readers ------------------------------------------------------------------------------
async def test_sqlite_reads_use_the_readers_and_close_with_the_store(tmp_path: Path) -> None:
    db = DatabaseManager(tmp_path / "r.db")
    await db.connect()
    store = db.store
    assert isinstance(store, SQLiteStore)
    readers = store.readers
    assert readers.is_open and readers.inline is not None
    conns = [readers.inline, *readers._all]
    assert len(conns) == readers.size + 1
    await db.create_system_log("x")
    assert await asyncio.gather(*(count(db, heavy=True) for _ in range(10))) == [1] * 10
    # Readers are query-only: a write through one is refused.
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        readers.inline.execute("DELETE FROM system_logs")
    await db.close()
    assert not readers.is_open
    for conn in conns:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")


async def test_sqlite_close_waits_for_reads_in_flight(tmp_path: Path) -> None:
    db = DatabaseManager(tmp_path / "r.db")
    await db.connect()
    await db.create_system_log("x")
    reads = [asyncio.create_task(count(db, heavy=True)) for _ in range(6)]
    await asyncio.sleep(0)
    await db.close()
    assert [await r for r in reads] == [1] * 6


async def test_sqlite_read_only_store_reads_through_its_one_connection(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    async with DatabaseManager(path) as db:
        await db.create_system_log("x")
    store = SQLiteStore(resolve_target(path))
    store.read_only = True
    await store.open()
    try:
        assert not store.readers.is_open  # the fallback: no readers, the old path
        assert (await store.fetch(COUNT))[0]["n"] == 1
        assert (await store.fetch(COUNT, heavy=True))[0]["n"] == 1
        async with store.snapshot():
            assert (await store.fetch(COUNT, heavy=True))[0]["n"] == 1
    finally:
        await store.close()


async def test_sqlite_pool_hands_a_connection_on_past_a_cancelled_waiter(tmp_path: Path) -> None:
    async with DatabaseManager(tmp_path / "r.db"):
        pass  # creates the file, in WAL mode
    readers = SQLiteReaders(tmp_path / "r.db", busy_timeout_ms=1000, size=1)
    await readers.open()
    try:
        held = await readers.acquire()
        first = asyncio.create_task(readers.acquire())
        second = asyncio.create_task(readers.acquire())
        await asyncio.sleep(0)
        readers.release(held)  # wakes `first`, cancelled before it runs:
        first.cancel()
        conn = await asyncio.wait_for(second, 5)  # the turn passed on to `second`
        assert conn is held
        readers.release(conn)
    finally:
        await readers.close()
