"""Group commit on PostgreSQL: concurrent awaited writes share transactions, each still committed.

Every test runs against the real server (fixture ``pg_url``). Commits are counted twice: by the
store's ``write_commits`` counter and, where no savepoint is involved, by the rows' ``xmin`` (the
id of the transaction that wrote them), which the server assigns.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from group_helpers import ten_writers_the_first_cancelled

from orchestrator_db import (
    ConstraintError,
    DatabaseManager,
    DuplicateError,
    ForeignKeyError,
    NotConnectedError,
)
from orchestrator_db.store.base import uuid7
from orchestrator_db.store.postgres import PostgresStore

MISSING = "00000000-0000-7000-8000-000000000000"


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[DatabaseManager]:
    async with DatabaseManager(url=pg_url) as manager:
        yield manager


@pytest.fixture
async def other(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own: it sees only what has been committed."""
    conn = await asyncpg.connect(pg_url)
    try:
        yield conn
    finally:
        await conn.close()


def store_of(db: DatabaseManager) -> PostgresStore:
    store = db.store
    assert isinstance(store, PostgresStore)
    return store


async def new_agent(db: DatabaseManager, name: str = "o") -> str:
    oa = await db.create_orchestrator_agent(name)
    return await db.create_agent(oa, "s")


async def test_fifty_awaited_writes_share_commits_and_each_is_committed_when_it_returns(
        db: DatabaseManager, other: asyncpg.Connection) -> None:
    agent = await new_agent(db)
    store = store_of(db)
    assert store.group_commit
    lock = asyncio.Lock()
    visible: list[bool] = []

    async def write(i: int) -> str:
        log_id = await db.create_agent_log(agent, f"m{i}")
        async with lock:  # one query at a time on the other connection
            visible.append(await other.fetchval(
                "SELECT count(*) FROM agent_logs WHERE id = $1::uuid", log_id) == 1)
        return log_id

    before = store.write_commits
    ids = await asyncio.gather(*[write(i) for i in range(50)])
    commits = store.write_commits - before

    assert visible == [True] * 50
    assert 1 <= commits < 50
    rows = await db.list_agent_logs(agent, limit=1000)
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert sorted(r["message"] for r in rows) == sorted(f"m{i}" for i in range(50))
    # The server's own account: the rows were written by fewer transactions than rows.
    xids = await other.fetchval("SELECT count(DISTINCT xmin::text) FROM agent_logs")
    assert xids == commits


async def test_without_group_commit_every_write_commits_alone(
        db: DatabaseManager, other: asyncpg.Connection) -> None:
    agent = await new_agent(db)
    store = store_of(db)
    store.group_commit = False
    before = store.write_commits
    await asyncio.gather(*[db.create_agent_log(agent, f"m{i}") for i in range(20)])
    assert store.write_commits - before == 20
    assert await other.fetchval("SELECT count(DISTINCT xmin::text) FROM agent_logs") == 20


async def test_a_bad_row_fails_only_its_own_call(db: DatabaseManager) -> None:
    agent = await new_agent(db)
    store = store_of(db)
    before = store.write_commits
    results = await asyncio.gather(
        *[db.create_agent_log(MISSING if i == 17 else agent, f"m{i}") for i in range(50)],
        return_exceptions=True)
    commits = store.write_commits - before

    errors = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert [(i, type(r)) for i, r in errors] == [(17, ForeignKeyError)]
    assert MISSING in str(errors[0][1])
    assert isinstance(errors[0][1].__cause__, asyncpg.ForeignKeyViolationError)
    assert 1 <= commits < 49
    rows = await db.list_agent_logs(agent, limit=1000)
    assert sorted(r["id"] for r in rows) == sorted(r for r in results if isinstance(r, str))
    assert sorted(r["message"] for r in rows) == sorted(f"m{i}" for i in range(50) if i != 17)


async def test_several_bad_rows_of_different_kinds_in_one_group(db: DatabaseManager) -> None:
    agent = await new_agent(db, "taken")
    calls = []
    for i in range(30):
        if i in (3, 21):
            calls.append(db.create_agent_log(MISSING, f"bad {i}"))
        elif i == 10:
            calls.append(db.create_orchestrator_agent("taken"))
        elif i == 11:
            calls.append(db.create_orchestrator_agent("new"))
        else:
            calls.append(db.create_agent_log(agent, f"m{i}"))
    results = await asyncio.gather(*calls, return_exceptions=True)

    kinds = {i: type(r) for i, r in enumerate(results) if isinstance(r, BaseException)}
    assert kinds == {3: ForeignKeyError, 10: DuplicateError, 21: ForeignKeyError}
    messages = sorted(r["message"] for r in await db.list_agent_logs(agent, limit=1000))
    assert messages == sorted(f"m{i}" for i in range(30) if i not in (3, 10, 11, 21))
    names = sorted(r["name"] for r in await db.list_orchestrator_agents())
    assert names == ["new", "taken"]


async def test_update_and_delete_return_their_own_rowcounts_under_concurrency(
        db: DatabaseManager) -> None:
    store = store_of(db)
    oa = await db.create_orchestrator_agent("o")
    agents = await asyncio.gather(*[db.create_agent(oa, f"s{i}") for i in range(20)])
    await asyncio.gather(*[db.create_agent_log(a, f"log {j}")
                           for i, a in enumerate(agents) for j in range(i % 4)])
    absent = [uuid7() for _ in range(5)]

    before = store.write_commits
    results = await asyncio.gather(
        *[db.update_agent_status(a, "executing") for a in agents[:10]],
        *[db.update_agent_status(a, "executing") for a in absent],
        # Rowcounts above one: agent i has i % 4 logs.
        *[store.execute("UPDATE agent_logs SET message = 'changed' WHERE agent_id = $1", [a])
          for a in agents],
        *[db.delete_agent(a) for a in agents[15:]],
        *[db.delete_agent(a) for a in absent],
    )
    commits = store.write_commits - before

    assert results == ([True] * 10 + [False] * 5 + [i % 4 for i in range(20)]
                       + [True] * 5 + [False] * 5)
    assert 1 <= commits < len(results)
    statuses = {a["id"]: a["status"] for a in await db.list_agents(limit=1000)}
    assert statuses == {a: "executing" if i < 10 else "pending"
                        for i, a in enumerate(agents) if i < 15}
    logs = await db.list_agent_logs(limit=1000)
    assert {r["message"] for r in logs} == {"changed"}
    assert len(logs) == sum(i % 4 for i in range(15))


async def test_writes_inside_a_transaction_bypass_the_group_and_roll_back_together(
        db: DatabaseManager, other: asyncpg.Connection) -> None:
    agent = await new_agent(db)
    store = store_of(db)
    inside = asyncio.Event()
    release = asyncio.Event()
    before = store.write_commits

    async def rolled_back() -> None:
        try:
            with pytest.raises(RuntimeError):
                async with db.transaction():
                    for i in range(5):  # one at a time: they share the transaction's connection
                        await db.create_agent_log(agent, f"tx{i}")
                    assert await db.update_agent_status(agent, "executing") is True
                    # Awaited, yet not visible to anyone else: they were not group-committed.
                    assert await other.fetchval("SELECT count(*) FROM agent_logs") == 0
                    inside.set()
                    await release.wait()
                    raise RuntimeError("undo")
        finally:
            inside.set()  # a failed assertion above must not leave the test waiting

    tx = asyncio.create_task(rolled_back())
    await inside.wait()
    assert not tx.done()
    outside = await asyncio.gather(*[db.create_agent_log(agent, f"w{i}") for i in range(20)])
    assert len(outside) == 20
    assert await other.fetchval("SELECT count(*) FROM agent_logs") == 20
    release.set()
    await tx

    messages = sorted(r["message"] for r in await db.list_agent_logs(agent, limit=1000))
    assert messages == sorted(f"w{i}" for i in range(20))
    assert (await db.get_agent(agent) or {})["status"] == "pending"
    assert 1 <= store.write_commits - before < 20  # only the outside writes were counted


async def test_a_failing_commit_fails_every_caller_of_its_group(
        db: DatabaseManager, other: asyncpg.Connection) -> None:
    agent = await new_agent(db)
    # A deferred constraint is checked by COMMIT, not by the statement: the group's COMMIT fails.
    await other.execute("CREATE TABLE known_types (name text PRIMARY KEY)")
    await other.execute("INSERT INTO known_types VALUES ('event')")
    await other.execute(
        "ALTER TABLE agent_logs ADD CONSTRAINT agent_logs_known_type FOREIGN KEY (log_type) "
        "REFERENCES known_types (name) DEFERRABLE INITIALLY DEFERRED")

    results = await asyncio.gather(
        *[db.create_agent_log(agent, f"m{i}", log_type="unknown" if i == 5 else "event")
          for i in range(10)],
        return_exceptions=True)

    assert all(isinstance(r, ConstraintError) for r in results), results
    assert all(isinstance(r.__cause__, asyncpg.ForeignKeyViolationError)  # type: ignore[union-attr]
               for r in results)
    assert await other.fetchval("SELECT count(*) FROM agent_logs") == 0
    # The connection went back to the pool in a usable state.
    assert len(await asyncio.gather(*[db.create_agent_log(agent, f"n{i}") for i in range(10)])) == 10
    assert await other.fetchval("SELECT count(*) FROM agent_logs") == 10


async def test_cancelling_the_first_writer_still_commits_the_others(db: DatabaseManager) -> None:
    def all_queued() -> None:  # task 0 opened the group, 1-9 joined
        assert len(store_of(db)._groups.queue) == 10

    await ten_writers_the_first_cancelled(db, once_started=True, started=all_queued)


async def test_a_writer_cancelled_while_its_group_commits_leaves_the_others_alone(
        db: DatabaseManager) -> None:
    agent = await new_agent(db)
    store = store_of(db)
    tasks = [asyncio.create_task(db.create_agent_log(agent, f"m{i}")) for i in range(10)]
    await asyncio.sleep(0)  # each task ran up to its await: all ten are queued
    assert len(store._groups.queue) == 10
    while store._groups.queue:  # until the group has been taken and its commit started
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    tasks[0].cancel()
    tasks[9].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert isinstance(results[9], asyncio.CancelledError)
    assert all(isinstance(r, str) for r in results[1:9])
    messages = {r["message"] for r in await db.list_agent_logs(agent, limit=1000)}
    # Cancelled callers only stopped waiting: their writes were already part of the transaction.
    assert messages == {f"m{i}" for i in range(10)}


async def test_close_commits_the_writes_still_waiting_for_their_group(pg_url: str) -> None:
    db = DatabaseManager(url=pg_url)
    await db.connect()
    agent = await new_agent(db)
    store = store_of(db)
    tasks = [asyncio.create_task(db.create_agent_log(agent, f"m{i}")) for i in range(10)]
    await asyncio.sleep(0)
    assert len(store._groups.queue) == 10  # queued: their group has not started yet
    await db.close()
    assert store._pool is None
    ids = await asyncio.gather(*tasks)
    with pytest.raises(NotConnectedError):
        await store.execute("DELETE FROM agent_logs")

    async with DatabaseManager(url=pg_url) as again:
        rows = await again.list_agent_logs(agent, limit=1000)
    assert sorted(r["id"] for r in rows) == sorted(ids)


async def test_close_with_only_cancelled_writes_queued(pg_url: str) -> None:
    db = DatabaseManager(url=pg_url)
    await db.connect()
    try:
        agent = await new_agent(db)
        store = store_of(db)
        while store._groups.tasks:  # let the lone writes of new_agent release their connections
            await asyncio.wait(set(store._groups.tasks))
        tasks = [asyncio.create_task(db.create_agent_log(agent, f"m{i}")) for i in range(3)]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()  # cancels the future each one waits on, at once
        assert len(store._groups.queue) == 3 and not store._groups.tasks
    finally:
        await db.close()
    assert all(task.cancelled() for task in tasks)
    async with DatabaseManager(url=pg_url) as again:
        assert await again.list_agent_logs(agent) == []
