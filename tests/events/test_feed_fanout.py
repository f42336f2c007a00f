"""``ChangeFeed.subscribe_batches``: a burst of commits reaches a subscriber as one list, in order,
with what ``subscribe`` gives (replay, filters, no gap, no duplicate), on both engines."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from orchestrator_db import DatabaseManager, ValidationError
from orchestrator_db.events import ChangeEvent, ChangeFeed

WAIT = 5.0  # generous: an event normally arrives within ~50 ms


async def events_until(batches: AsyncIterator[list[ChangeEvent]], n: int
                       ) -> list[list[ChangeEvent]]:
    """Receive lists until they hold ``n`` events in all."""
    out: list[list[ChangeEvent]] = []
    while sum(map(len, out)) < n:
        out.append(await asyncio.wait_for(anext(batches), WAIT))
    return out


async def test_a_burst_arrives_as_one_list_in_order(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("fanout")
    agent = await db.create_agent(oa, session_id="s-burst")
    async with ChangeFeed(db) as feed, aclosing(feed.subscribe_batches()) as batches:
        # One transaction, 30 rows: the watcher reads them in one go, so they are all queued
        # before the subscriber wakes up.
        async with db.transaction():
            ids = [await db.create_agent_log(agent, f"line {i}") for i in range(30)]
        got = await events_until(batches, 30)
    assert len(got) == 1
    [batch] = got
    assert [e.id for e in batch] == ids
    assert [e.row["message"] for e in batch if e.row] == [f"line {i}" for i in range(30)]
    assert all(e.session_id == "s-burst" for e in batch)
    positions = [e.position for e in batch]
    assert positions == sorted(positions) and len(set(positions)) == 30


async def test_max_batch_splits_a_burst(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("fanout")
    agent = await db.create_agent(oa, session_id="s-split")
    async with ChangeFeed(db) as feed, aclosing(feed.subscribe_batches(max_batch=4)) as batches:
        async with db.transaction():
            ids = [await db.create_agent_log(agent, f"line {i}") for i in range(10)]
        got = await events_until(batches, 10)
    assert [len(b) for b in got] == [4, 4, 2]
    assert [e.id for b in got for e in b] == ids


async def test_replay_then_live_with_filters(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("fanout")
    mine = await db.create_agent(oa, session_id="s-mine")
    other = await db.create_agent(oa, session_id="s-other")
    async with ChangeFeed(db) as feed:
        start = await feed.current_position()
        missed = [await db.create_agent_log(mine, f"missed {i}", log_level="ERROR")
                  for i in range(3)]
        await db.create_agent_log(other, "not mine", log_level="ERROR")
        await db.create_agent_log(mine, "too quiet", log_level="DEBUG")
        async with aclosing(feed.subscribe_batches(after=start, session_id="s-mine",
                                                   min_level="warning")) as batches:
            replayed = await events_until(batches, 3)
            live_id = await db.create_agent_log(mine, "live", log_level="CRITICAL")
            await db.create_agent_log(other, "not mine either", log_level="ERROR")
            live = await events_until(batches, 1)
    assert [e.id for b in replayed for e in b] == missed
    assert [e.id for b in live for e in b] == [live_id]
    assert all(b for b in replayed + live)  # never an empty list


async def test_subscribers_get_the_same_events(db: DatabaseManager) -> None:
    """Many subscribers, one watcher: each gets every event once, whatever it reads with."""
    oa = await db.create_orchestrator_agent("fanout")
    agent = await db.create_agent(oa, session_id="s-many")
    async with ChangeFeed(db) as feed:
        lists = [feed.subscribe_batches() for _ in range(5)]
        single = feed.subscribe()

        async def one_by_one() -> list[ChangeEvent]:
            return [await asyncio.wait_for(anext(single), WAIT) for _ in range(21)]

        try:
            # Attached (iterating) before the writes: every event reaches them live.
            readers = [asyncio.create_task(events_until(b, 21)) for b in lists]
            single_reader = asyncio.create_task(one_by_one())
            await asyncio.sleep(0.1)
            ids = []
            for round_ in range(3):
                async with db.transaction():
                    ids += [await db.create_agent_log(agent, f"r{round_} {i}") for i in range(7)]
            got = [await reader for reader in readers]
            for batches_got in got:
                assert [e.id for b in batches_got for e in b] == ids
            singles = await single_reader
            assert [e.id for e in singles] == ids
            # The same event objects: each is encoded to JSON once for every subscriber.
            assert all(e is singles[0] for e in (g[0][0] for g in got))
        finally:
            for batches in lists:
                await batches.aclose()
            await single.aclose()  # type: ignore[attr-defined]
        assert not feed._subs  # every subscription detached when closed


async def test_bad_max_batch(db: DatabaseManager) -> None:
    async with ChangeFeed(db) as feed:
        for bad in (0, -1, True, 2.5):
            with pytest.raises(ValidationError) as info:
                feed.subscribe_batches(max_batch=bad)  # type: ignore[arg-type]
            assert info.value.field == "max_batch"


async def test_a_waiting_subscriber_overflowed_by_one_burst_reads_the_database(
        db: DatabaseManager) -> None:
    """A burst larger than the queue wakes a subscriber already waiting: it replays it all."""
    oa = await db.create_orchestrator_agent("fanout")
    agent = await db.create_agent(oa, session_id="s-over")
    async with ChangeFeed(db, queue_size=5) as feed, \
            aclosing(feed.subscribe_batches()) as batches, \
            aclosing(feed.subscribe_batches(session_id="s-none")) as elsewhere:
        waiting = asyncio.create_task(events_until(batches, 50))
        await asyncio.sleep(0.1)  # attached and waiting on its queue
        ids = await db.create_agent_logs([{"agent_id": agent, "message": f"m{i}"}
                                          for i in range(50)])
        got = await waiting
        marker = await db.create_system_log("after the burst")
        [[after]] = await events_until(batches, 1)
        nothing = asyncio.create_task(anext(elsewhere))
        await asyncio.sleep(0.2)
        assert not nothing.done()  # a filter no event passes: nothing queued, nothing sent
        nothing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await nothing
    assert [e.id for b in got for e in b] == ids
    assert after.id == marker


async def test_distinct_filters_share_one_pass(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("fanout")
    a1 = await db.create_agent(oa, session_id="s-a")
    a2 = await db.create_agent(oa, session_id="s-b")
    async with ChangeFeed(db) as feed:
        subs = {"a": feed.subscribe_batches(session_id="s-a"),
                "a2": feed.subscribe_batches(session_id="s-a"),
                "b": feed.subscribe_batches(session_id="s-b"),
                "errors": feed.subscribe_batches(min_level="ERROR"),
                "all": feed.subscribe_batches()}
        readers = {name: asyncio.create_task(events_until(b, n)) for (name, b), n in zip(
            subs.items(), (2, 2, 2, 2, 4), strict=True)}
        await asyncio.sleep(0.1)
        async with db.transaction():
            la = await db.create_agent_log(a1, "a info")
            le = await db.create_agent_log(a1, "a error", log_level="ERROR")
            lb = await db.create_agent_log(a2, "b info")
            lbe = await db.create_agent_log(a2, "b error", log_level="ERROR")
        got = {name: [e.id for b in await task for e in b] for name, task in readers.items()}
        for batches in subs.values():
            await batches.aclose()
    assert got == {"a": [la, le], "a2": [la, le], "b": [lb, lbe], "errors": [le, lbe],
                   "all": [la, le, lb, lbe]}
