"""transaction(): commit on success, roll back on exception, nested blocks are savepoints."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator_db import (
    DatabaseManager,
    DuplicateError,
    ForeignKeyError,
    OrchestratorDBError,
    ValidationError,
)


async def test_commit_and_rollback(db: DatabaseManager) -> None:
    async with db.transaction():
        oa = await db.create_orchestrator_agent("kept")
        await db.create_agent(oa, "s")
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.create_orchestrator_agent("lost")
            raise RuntimeError("boom")
    assert [o["name"] for o in await db.list_orchestrator_agents()] == ["kept"]


async def test_error_inside_rolls_back_everything(db: DatabaseManager) -> None:
    with pytest.raises(ValidationError):
        async with db.transaction():
            oa = await db.create_orchestrator_agent("a")
            await db.create_agent(oa, "s", status="bogus")
    assert await db.list_orchestrator_agents() == []


async def test_nested_savepoint(db: DatabaseManager) -> None:
    async with db.transaction():
        await db.create_system_log("outer")
        with pytest.raises(KeyError):
            async with db.transaction():
                await db.create_system_log("inner, rolled back")
                raise KeyError("x")
        async with db.transaction():
            await db.create_system_log("inner, kept")
    assert [r["message"] for r in await db.list_system_logs()] == ["outer", "inner, kept"]


MISSING = "0190a000-0000-7000-8000-000000000000"


async def test_a_failed_write_inside_takes_back_only_itself(db: DatabaseManager) -> None:
    # As SQLite rolls back only the failed statement, PostgreSQL (one savepoint a write) keeps
    # the transaction usable: the error is the typed one, explained by a lookup in the same
    # transaction, the caller goes on (get-or-create), and the block commits the rest.
    async with db.transaction():
        oa = await db.create_orchestrator_agent("planner")
        agent = await db.create_agent(oa, "s")
        await db.create_agent_log(agent, "before")
        with pytest.raises(ForeignKeyError, match=f"agent {MISSING} does not exist") as fk:
            await db.create_agent_logs([{"agent_id": agent, "message": "lost"},
                                        {"agent_id": MISSING, "message": "lost too"}])
        assert fk.value.context["ids"] == [MISSING]
        with pytest.raises(ForeignKeyError, match=f"parent agent {MISSING} does not exist"):
            await db.create_agent(oa, "s", parent_agent_id=MISSING)
        with pytest.raises(ForeignKeyError, match=f"agent {MISSING} does not exist"):
            await db.create_prompt(MISSING, "x")
        try:
            await db.create_orchestrator_agent("planner")
        except DuplicateError:
            found = await db.get_orchestrator_agent_by_name("planner")
        assert found is not None and found["id"] == oa
        await db.create_agent_log(agent, "after")
    assert sorted(await messages(db, agent)) == ["after", "before"]
    assert [a["id"] for a in await db.list_agents()] == [agent]


async def test_failed_writes_and_savepoints_interleaved_keep_exactly_the_rest(
        db: DatabaseManager) -> None:
    # On PostgreSQL a write's savepoint stays open until the level's next write releases it
    # (one round trip fewer): failures, nested blocks that commit or roll back, and tasks
    # writing into the block, in any order, still take back exactly what failed.
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")

    async def fails() -> None:
        with pytest.raises(ForeignKeyError):
            await db.create_agent_log(MISSING, "never")

    async with db.transaction():
        await fails()  # the level's first write fails
        await db.create_agent_log(agent, "a")
        await fails()
        await fails()
        await db.create_agent_log(agent, "b")
        async with db.transaction():  # nested, committed
            await fails()
            await db.create_agent_log(agent, "c")
            await fails()
        await db.create_agent_log(agent, "d")
        with pytest.raises(RuntimeError):
            async with db.transaction():  # nested, rolled back
                await db.create_agent_log(agent, "rolled back")
                raise RuntimeError
        await fails()
        async with db.transaction():
            async with db.transaction():
                await db.create_agent_log(agent, "e")
            await fails()
        await asyncio.gather(*(db.create_agent_log(agent, f"g{i}") for i in range(3)), fails())
        await db.create_agent_log(agent, "h")
    assert sorted(await messages(db, agent)) == ["a", "b", "c", "d", "e", "g0", "g1", "g2", "h"]


async def test_reads_inside_see_own_writes(db: DatabaseManager) -> None:
    async with db.transaction():
        oa = await db.create_orchestrator_agent("a")
        assert (await db.get_orchestrator_agent(oa) or {})["name"] == "a"
        assert len(await db.list_orchestrator_agents()) == 1


# A transaction belongs to the task that opened it ------------------------------------------------
async def new_agent(db: DatabaseManager) -> str:
    return await db.create_agent(await db.create_orchestrator_agent("o"), "s")


async def messages(db: DatabaseManager, agent: str) -> list[str]:
    return sorted(r["message"] for r in await db.list_agent_logs(agent, limit=1000))


async def test_a_task_that_outlives_the_block_writes_on_its_own(db: DatabaseManager) -> None:
    agent = await new_agent(db)
    go = asyncio.Event()

    async def straggler() -> str:
        await go.wait()
        return await db.create_agent_log(agent, "straggler")

    async with db.transaction():
        await db.create_agent_log(agent, "in block")
        task = asyncio.create_task(straggler())  # sees the block's context, outlives the block
    with pytest.raises(RuntimeError):
        async with db.transaction():  # a later, unrelated transaction
            await db.create_agent_log(agent, "rolled back")
            go.set()
            await asyncio.sleep(0.05)  # the straggler writes while this one is open
            raise RuntimeError("undo")
    log_id = await task

    assert await messages(db, agent) == ["in block", "straggler"]
    assert (await db.get_agent_log(log_id) or {})["message"] == "straggler"


async def test_concurrent_writes_inside_a_transaction_share_it(db: DatabaseManager,
                                                               db_url: str) -> None:
    agent = await new_agent(db)
    async with DatabaseManager(url=db_url) as other:
        async with db.transaction():
            ids = await asyncio.gather(*[db.create_agent_log(agent, f"kept {i}")
                                         for i in range(20)])
            assert await messages(db, agent) == sorted(f"kept {i}" for i in range(20))
            assert await messages(other, agent) == []  # not committed before the block ends
        assert await messages(other, agent) == sorted(f"kept {i}" for i in range(20))
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await asyncio.gather(*[db.create_agent_log(agent, f"lost {i}") for i in range(20)])
            raise RuntimeError("undo")

    rows = await db.list_agent_logs(agent, limit=1000)
    assert sorted(r["id"] for r in rows) == sorted(ids)


async def test_a_savepoint_keeps_other_tasks_writes_out(db: DatabaseManager) -> None:
    agent = await new_agent(db)
    async with db.transaction():
        sibling = asyncio.create_task(db.create_agent_log(agent, "sibling"))
        with pytest.raises(KeyError):
            async with db.transaction():
                await db.create_agent_log(agent, "savepoint, rolled back")
                await asyncio.sleep(0.01)  # the sibling tries to write now: it waits
                raise KeyError("x")
        await sibling
    assert await messages(db, agent) == ["sibling"]


async def scenario(url: str) -> dict[str, Any]:
    """Tasks inside, across and after transactions; return what each call saw and what stayed."""
    seen: dict[str, Any] = {}
    async with DatabaseManager(url=url) as db:
        agent = await new_agent(db)
        go = asyncio.Event()

        async def child_savepoint() -> None:
            try:
                async with db.transaction():
                    await db.create_agent_log(agent, "child savepoint")
                    raise KeyError("x")
            except KeyError:
                seen["child savepoint"] = "rolled back"
            await db.create_agent_log(agent, "child after savepoint")

        async def straggler() -> None:
            await go.wait()
            await db.create_agent_log(agent, "straggler")

        async with db.transaction():
            results = await asyncio.gather(
                child_savepoint(), *[db.create_agent_log(agent, f"a{i}") for i in range(10)])
            seen["gather"] = [type(r).__name__ for r in results]
            async with db.transaction():  # the owner's savepoint, with writers of its own
                await asyncio.gather(*[db.create_agent_log(agent, f"sp{i}") for i in range(5)])
            late = asyncio.create_task(straggler())
        try:
            async with db.transaction():
                await asyncio.gather(*[db.create_agent_log(agent, f"b{i}") for i in range(10)])
                go.set()
                await asyncio.sleep(0.05)
                raise RuntimeError("undo")
        except RuntimeError:
            seen["second block"] = "rolled back"
        await late
        seen["messages"] = await messages(db, agent)
    return seen


async def test_same_results_on_sqlite_and_postgresql(sqlite_url: str, pg_url: str) -> None:
    on_sqlite = await scenario(sqlite_url)
    on_postgres = await scenario(pg_url)
    assert on_sqlite == on_postgres
    assert on_sqlite == {
        "child savepoint": "rolled back",
        "gather": ["NoneType"] + ["str"] * 10,
        "second block": "rolled back",
        "messages": sorted([*(f"a{i}" for i in range(10)), *(f"sp{i}" for i in range(5)),
                            "child after savepoint", "straggler"]),
    }


async def test_an_owner_cancelled_while_its_block_ends_still_ends_it(db: DatabaseManager) -> None:
    agent = await new_agent(db)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def child() -> None:
        async with db.transaction():  # a savepoint: holds the block until it ends
            await db.create_agent_log(agent, "child")
            inside.set()
            await release.wait()

    children: list[asyncio.Task[None]] = []

    async def owner() -> None:
        async with db.transaction():
            await db.create_agent_log(agent, "owner")
            children.append(asyncio.create_task(child()))
            await inside.wait()

    task = asyncio.create_task(owner())
    await inside.wait()
    await asyncio.sleep(0.01)  # the owner has left its block and waits for the savepoint
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()  # it cannot leave while the savepoint uses the connection
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await children[0]
    assert await messages(db, agent) == []  # the caller saw it fail: rolled back
    await db.create_agent_log(agent, "after")  # the connection is free again
    assert await messages(db, agent) == ["after"]


@pytest.mark.parametrize("nested", [False, True], ids=["transaction", "savepoint"])
async def test_a_connection_lost_inside_a_block_is_our_error(pg_url: str, nested: bool) -> None:
    # The rollback on the dead connection raised asyncpg's "cannot call Transaction.rollback():
    # the underlying connection is closed", replacing the error the block had raised.
    import asyncpg

    async with DatabaseManager(url=pg_url) as db:
        oa = await db.create_orchestrator_agent("o")
        with pytest.raises(OrchestratorDBError) as caught:
            async with db.transaction():
                await db.create_agent(oa, "s")
                [row] = await db.store.fetch("SELECT pg_backend_pid() AS pid")
                killer = await asyncpg.connect(pg_url)
                try:
                    await killer.execute("SELECT pg_terminate_backend($1)", row["pid"])
                finally:
                    await killer.close()
                if nested:
                    async with db.transaction():
                        await db.create_agent(oa, "t")
                else:
                    await db.create_agent(oa, "t")
        assert type(caught.value).__module__.startswith("orchestrator_db")
        assert await db.list_agents() == []  # the pool carries on without the dead connection
