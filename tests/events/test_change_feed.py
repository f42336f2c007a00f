"""The change feed on both engines: events, other processes, resume, filters, fan-out, retention."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import timedelta

import pytest

from orchestrator_db import DatabaseManager, NotConnectedError, ValidationError
from orchestrator_db.events import ChangeEvent, ChangeFeed, prune_changes

WAIT = 5.0  # generous: an event normally arrives within ~50 ms

WRITER_SCRIPT = """
import asyncio, json, sys, time
from orchestrator_db import DatabaseManager

async def main(url, name):
    async with DatabaseManager(url=url) as db:
        oa = await db.create_orchestrator_agent(name)
        agent = await db.create_agent(oa, session_id="s-other")
        log = await db.create_agent_log(agent, "from another process", log_level="ERROR")
        committed = time.time()
    print(json.dumps({"oa": oa, "agent": agent, "log": log, "committed": committed}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def next_event(events: AsyncIterator[ChangeEvent]) -> ChangeEvent:
    return await asyncio.wait_for(anext(events), WAIT)


async def take(events: AsyncIterator[ChangeEvent], n: int) -> list[ChangeEvent]:
    return [await next_event(events) for _ in range(n)]


async def run_writer(url: str, name: str) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER_SCRIPT, url, name,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return dict(json.loads(out))


async def test_every_table_and_operation(db: DatabaseManager) -> None:
    async with ChangeFeed(db) as feed, aclosing(feed.subscribe()) as events:
        positions: list[int] = []

        async def expect(table: str, op: str, row_id: str, *, session_id: str | None = None,
                         agent_id: str | None = None, log_level: str | None = None,
                         row: dict[str, object] | None = None) -> ChangeEvent:
            event = await next_event(events)
            assert (event.table, event.op, event.id) == (table, op, row_id)
            assert (event.session_id, event.agent_id, event.log_level) == (
                session_id, agent_id, log_level)
            assert event.row == row
            positions.append(event.position)
            return event

        oa = await db.create_orchestrator_agent("planner", "Plans")
        await expect("orchestrator_agents", "insert", oa, row=await db.get_orchestrator_agent(oa))
        await db.update_orchestrator_agent(oa, description="Plans better")
        event = await expect("orchestrator_agents", "update", oa,
                             row=await db.get_orchestrator_agent(oa))
        assert event.row is not None and event.row["description"] == "Plans better"

        agent = await db.create_agent(oa, "s-1", model="m")
        await expect("agents", "insert", agent, session_id="s-1", agent_id=agent,
                     row=await db.get_agent(agent))
        await db.update_agent_status(agent, "executing")
        event = await expect("agents", "update", agent, session_id="s-1", agent_id=agent,
                             row=await db.get_agent(agent))
        assert event.row is not None and event.row["status"] == "executing"

        prompt = await db.create_prompt(agent, "hello?")
        await expect("prompts", "insert", prompt, session_id="s-1", agent_id=agent,
                     row=await db.get_prompt(prompt))
        await db.complete_prompt(prompt, "hi", tokens_input=3, tokens_output=5, cost_usd=0.25)
        event = await expect("prompts", "update", prompt, session_id="s-1", agent_id=agent,
                             row=await db.get_prompt(prompt))
        assert event.row is not None and event.row["cost_usd"] == 0.25

        log = await db.create_agent_log(agent, "careful", log_level="WARNING",
                                        details={"k": [1, 2]})
        event = await expect("agent_logs", "insert", log, session_id="s-1", agent_id=agent,
                             log_level="WARNING", row=await db.get_agent_log(log))
        assert event.row is not None and event.row["details"] == {"k": [1, 2]}
        syslog = await db.create_system_log("disk", log_level="ERROR", source="monitor")
        await expect("system_logs", "insert", syslog, log_level="ERROR",
                     row=await db.get_system_log(syslog))

        await db.delete_prompt(prompt)
        await expect("prompts", "delete", prompt, session_id="s-1", agent_id=agent)

        # Deleting the agent deletes its log too: two events, in an order that depends on
        # the engine, both naming the agent and its session.
        await db.delete_agent(agent)
        cascade = await take(events, 2)
        assert {(e.table, e.op, e.id) for e in cascade} == {
            ("agents", "delete", agent), ("agent_logs", "delete", log)}
        assert all(e.row is None and e.session_id == "s-1" and e.agent_id == agent
                   for e in cascade)
        positions += [e.position for e in cascade]

        await db.delete_orchestrator_agent(oa)
        await expect("orchestrator_agents", "delete", oa)

        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        assert await feed.current_position() == positions[-1]
        as_dict = event.to_dict()
        assert list(as_dict) == ["position", "table", "op", "id", "row", "session_id",
                                 "agent_id", "log_level"]
        assert json.loads(json.dumps(as_dict)) == as_dict


async def test_commit_in_another_process_arrives(db_url: str) -> None:
    async with DatabaseManager(url=db_url) as db, ChangeFeed(db) as feed, \
            aclosing(feed.subscribe()) as events:
        arrivals: list[tuple[ChangeEvent, float]] = []

        async def consume() -> None:
            while len(arrivals) < 3:
                arrivals.append((await next_event(events), time.time()))

        consumer = asyncio.create_task(consume())
        written = await run_writer(db_url, "remote-planner")
        await consumer
    got = [event for event, _ in arrivals]
    assert [(e.table, e.op, e.id) for e in got] == [
        ("orchestrator_agents", "insert", written["oa"]),
        ("agents", "insert", written["agent"]),
        ("agent_logs", "insert", written["log"]),
    ]
    log_event = got[2]
    assert log_event.session_id == "s-other" and log_event.log_level == "ERROR"
    assert log_event.row is not None and log_event.row["message"] == "from another process"
    latency_ms = (arrivals[2][1] - float(written["committed"])) * 1000  # type: ignore[arg-type]
    # Live, not found by some later sweep: a generous bound that a shared machine still meets
    # (the median target, < 250 ms, is measured by benchmarks/bench_events.py).
    assert latency_ms < 5000, f"{db.dialect.value}: event arrived {latency_ms:.0f} ms late"


async def test_resume_after_restart_replays_exactly_what_was_missed(db_url: str) -> None:
    async with DatabaseManager(url=db_url) as db:
        oa = await db.create_orchestrator_agent("builder")
        agent = await db.create_agent(oa, "s-1")
        async with ChangeFeed(db) as feed, aclosing(feed.subscribe()) as events:
            first = await db.create_agent_logs([{"agent_id": agent, "message": f"a{i}"}
                                                for i in range(3)])
            seen = await take(events, 3)
        assert [e.id for e in seen] == first
        last = seen[-1].position

        # The server is down while these are written.
        missed = await db.create_agent_logs([{"agent_id": agent, "message": f"b{i}"}
                                             for i in range(4)])
        await db.update_agent_status(agent, "completed")

        async with ChangeFeed(db) as feed, aclosing(feed.subscribe(after=last)) as events:
            replayed = await take(events, 5)
            live_ids = await db.create_agent_logs([{"agent_id": agent, "message": f"c{i}"}
                                                   for i in range(2)])
            live = await take(events, 2)
            marker = await db.create_system_log("marker")
            tail = await next_event(events)
    assert [e.id for e in replayed] == [*missed, agent]
    assert replayed[-1].op == "update" and replayed[-1].row["status"] == "completed"  # type: ignore[index]
    assert [e.id for e in live] == live_ids
    assert tail.id == marker  # nothing was delivered twice before it
    positions = [e.position for e in replayed + live + [tail]]
    assert positions == sorted(set(positions)) and positions[0] > last


async def test_current_position_includes_writes_committed_before_the_call(db_url: str) -> None:
    async with DatabaseManager(url=db_url) as db, DatabaseManager(url=db_url) as writer, \
            ChangeFeed(db, poll_interval=10.0) as feed, aclosing(feed.subscribe()) as events:
        oa = await writer.create_orchestrator_agent("position")
        # No poll is due for 10 s (SQLite) and no notification is awaited: the call catches up.
        assert await feed.current_position() == 1
        assert (await next_event(events)).id == oa
        async with aclosing(feed.subscribe(after=await feed.current_position())) as later:
            log = await writer.create_system_log("next")
            assert await feed.current_position() == 2  # catching up delivers it too
            assert (await next_event(later)).id == log


async def test_replay_seam_while_writes_continue(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("seam")
    agent = await db.create_agent(oa, "s-1")
    async with ChangeFeed(db) as feed:
        start = await feed.current_position()
        before = [await db.create_agent_log(agent, f"before {i}") for i in range(30)]

        async def write_more() -> list[str]:
            ids = []
            for i in range(30):
                ids.append(await db.create_agent_log(agent, f"during {i}"))
                await asyncio.sleep(0.003)
            return ids

        writer = asyncio.create_task(write_more())
        async with aclosing(feed.subscribe(after=start)) as events:
            got = await take(events, 60)
        during = await writer
    assert [e.id for e in got] == before + during
    assert [e.position for e in got] == sorted({e.position for e in got})


async def test_slow_subscriber_falls_back_to_the_database(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("bulk")
    agent = await db.create_agent(oa, "s-1")
    async with ChangeFeed(db, queue_size=5) as feed, \
            aclosing(feed.subscribe()) as slow, aclosing(feed.subscribe()) as other:
        ids = await db.create_agent_logs([{"agent_id": agent, "message": f"m{i}"}
                                          for i in range(200)])
        # Both queues overflow at once: each reads the rest from the database.
        first = await take(other, 200)
        lagging = await take(slow, 200)
        marker = await db.create_system_log("after the burst")
        assert (await next_event(slow)).id == marker
        assert (await next_event(other)).id == marker
    assert [e.id for e in first] == ids
    assert [e.id for e in lagging] == ids
    assert all(e.row is not None and e.row["message"] == f"m{i}" for i, e in enumerate(lagging))


async def test_filters(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("filters")
    a1 = await db.create_agent(oa, "s-1")
    a2 = await db.create_agent(oa, "s-2")
    async with ChangeFeed(db) as feed:
        start = await feed.current_position()
        by_session = feed.subscribe(after=start, session_id="s-1")
        by_agent = feed.subscribe(after=start, agent_id=a2)
        by_level = feed.subscribe(after=start, min_level="warning")
        live: list[ChangeEvent] = []

        async def follow_live() -> None:  # iterating before the writes: the live path
            async with aclosing(feed.subscribe(session_id="s-2", min_level="INFO")) as events:
                while not live or live[-1].log_level != "ERROR" or live[-1].row is None \
                        or live[-1].row["message"] != "end":
                    live.append(await next_event(events))

        follower = asyncio.create_task(follow_live())
        await asyncio.sleep(0.2)  # let it attach (if not, it replays: the result is the same)
        logs = {}
        for agent in (a1, a2):
            for level in ("DEBUG", "INFO", "ERROR"):
                logs[agent, level] = await db.create_agent_log(agent, level, log_level=level)
        sys_debug = await db.create_system_log("quiet", log_level="DEBUG")
        sys_crit = await db.create_system_log("loud", log_level="CRITICAL")
        await db.update_agent_status(a1, "executing")
        await db.update_agent_status(a2, "executing")
        # Each passes the filters it is last for: nothing else was delivered before it.
        end1 = await db.create_agent_log(a1, "end", log_level="ERROR")
        end2 = await db.create_agent_log(a2, "end", log_level="ERROR")
        async with aclosing(by_session) as s, aclosing(by_agent) as g, aclosing(by_level) as v:
            got_session = await take(s, 5)
            got_agent = await take(g, 5)
            got_level = await take(v, 7)
        await follower
    assert [e.id for e in got_session] == [
        logs[a1, "DEBUG"], logs[a1, "INFO"], logs[a1, "ERROR"], a1, end1]
    assert all(e.session_id == "s-1" for e in got_session)
    assert [e.id for e in got_agent] == [
        logs[a2, "DEBUG"], logs[a2, "INFO"], logs[a2, "ERROR"], a2, end2]
    assert all(e.agent_id == a2 and e.session_id == "s-2" for e in got_agent)
    assert [e.id for e in got_level] == [
        logs[a1, "ERROR"], logs[a2, "ERROR"], sys_crit, a1, a2, end1, end2]
    assert sys_debug not in {e.id for e in got_level}
    assert [e.id for e in live] == [logs[a2, "INFO"], logs[a2, "ERROR"], a2, end2]


async def test_subscribe_needs_a_running_feed_and_valid_arguments(db: DatabaseManager) -> None:
    feed = ChangeFeed(db)
    with pytest.raises(NotConnectedError):
        feed.subscribe()
    async with feed:
        with pytest.raises(ValidationError):
            feed.subscribe(min_level="LOUD")
        with pytest.raises(ValidationError):
            feed.subscribe(after=-1)
        events = feed.subscribe()
        got = []

        async def consume() -> None:
            async for event in events:
                got.append(event)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)
    # Stopping the feed ends the subscription instead of leaving it waiting.
    await asyncio.wait_for(consumer, WAIT)
    assert got == []


async def test_prune_changes(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("prune")
    agent = await db.create_agent(oa, "s-1")
    await db.create_agent_logs([{"agent_id": agent, "message": f"m{i}"} for i in range(10)])
    assert await prune_changes(db, keep_last=5) == 7
    assert await prune_changes(db, keep_last=5) == 0
    assert await prune_changes(db, older_than=timedelta(days=1)) == 0
    async with ChangeFeed(db) as feed:
        newest = await feed.current_position()
        assert newest == 12
        async with aclosing(feed.subscribe(after=0)) as events:
            # Resuming from before the pruned part is told so (it was a silent skip), then
            # gets what is left.
            notice, *remaining = await take(events, 6)
        assert (notice.op, notice.position) == ("reset", 7)
        assert "the change log now starts at position 8" in notice.row["message"]  # type: ignore[index]
        assert [e.position for e in remaining] == [8, 9, 10, 11, 12]
        async with aclosing(feed.subscribe(after=7)) as events:  # just before: nothing lost
            assert (await next_event(events)).position == 8
        # The newest change is always kept, so positions are never handed out twice.
        assert await prune_changes(db, older_than=timedelta(0)) == 4
        log = await db.create_agent_log(agent, "after prune")
        async with aclosing(feed.subscribe(after=newest)) as events:
            event = await next_event(events)
        assert (event.id, event.position) == (log, 13)
    with pytest.raises(ValidationError):
        await prune_changes(db)
    with pytest.raises(ValidationError):
        await prune_changes(db, keep_last=0)


async def test_two_server_processes_on_postgresql_both_see_everything(pg_url: str) -> None:
    async with DatabaseManager(url=pg_url) as writer, DatabaseManager(url=pg_url) as one, \
            DatabaseManager(url=pg_url) as two, ChangeFeed(one) as feed_one, \
            ChangeFeed(two) as feed_two, aclosing(feed_one.subscribe()) as events_one, \
            aclosing(feed_two.subscribe()) as events_two:
        oa = await writer.create_orchestrator_agent("fan-out")
        agent = await writer.create_agent(oa, "s-1")
        logs = await writer.create_agent_logs([{"agent_id": agent, "message": f"m{i}"}
                                               for i in range(20)])
        remote = await run_writer(pg_url, "remote")
        got_one = await take(events_one, 25)
        got_two = await take(events_two, 25)
    expected = [oa, agent, *logs, remote["oa"], remote["agent"], remote["log"]]
    assert [e.id for e in got_one] == expected
    assert [e.to_dict() for e in got_two] == [e.to_dict() for e in got_one]


async def test_postgresql_out_of_order_commits_are_not_skipped(pg_url: str) -> None:
    async with DatabaseManager(url=pg_url) as db, DatabaseManager(url=pg_url) as other, \
            ChangeFeed(db) as feed, aclosing(feed.subscribe()) as events:
        oa = await db.create_orchestrator_agent("gaps")
        agent = await db.create_agent(oa, "s-1")
        assert [e.id for e in await take(events, 2)] == [oa, agent]

        inside = asyncio.Event()
        release = asyncio.Event()
        slow_id: list[str] = []

        async def slow_transaction(commit: bool) -> None:
            try:
                async with other.transaction():
                    slow_id.append(await other.create_agent_log(agent, "slow"))
                    inside.set()
                    await release.wait()
                    if not commit:
                        raise RuntimeError("roll back")
            except RuntimeError:
                pass

        # A transaction takes a position, a later one commits first: the later change is held
        # back until the earlier transaction ends, then both arrive in position order.
        task = asyncio.create_task(slow_transaction(commit=True))
        await inside.wait()
        fast = await db.create_agent_log(agent, "fast")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pending := asyncio.ensure_future(
                anext(events))), 0.5)
        release.set()
        await task
        first = await asyncio.wait_for(pending, WAIT)
        second = await next_event(events)
        assert [first.id, second.id] == [slow_id[0], fast]
        assert first.position < second.position

        # A rolled-back transaction leaves a position that never fills: the feed moves on.
        inside.clear()
        release.clear()
        task = asyncio.create_task(slow_transaction(commit=False))
        await inside.wait()
        after_gap = await db.create_agent_log(agent, "after the rollback")
        release.set()
        await task
        event = await next_event(events)
        assert event.id == after_gap
        assert event.position == second.position + 2


async def test_a_deleted_agents_events_keep_its_session_when_replayed(db_url: str) -> None:
    # A feed that never saw the agent (a restarted server, another process) replays its
    # prompt and log and their cascade deletes: the agent is gone from the table, and on SQLite
    # the child deletes come before the agent's own delete row, which carries the session.
    async with DatabaseManager(url=db_url) as db:
        oa = await db.create_orchestrator_agent("builder")
        agent = await db.create_agent(oa, "s-gone")
        async with ChangeFeed(db) as feed:
            start = await feed.current_position()
        prompt = await db.create_prompt(agent, "plan")
        log = await db.create_agent_log(agent, "step")
        await db.delete_agent(agent)
        async with ChangeFeed(db) as feed, \
                aclosing(feed.subscribe(after=start, session_id="s-gone")) as events:
            replayed = await take(events, 5)
    assert sorted((e.table, e.op, e.id) for e in replayed) == sorted([
        ("prompts", "insert", prompt), ("agent_logs", "insert", log),
        ("prompts", "delete", prompt), ("agent_logs", "delete", log),
        ("agents", "delete", agent)])
    assert {e.session_id for e in replayed} == {"s-gone"}
