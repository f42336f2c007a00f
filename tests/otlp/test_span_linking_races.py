"""Two ingest processes on one database: a child and its parent written at the same moment.

Each process is a ``DatabaseManager`` (its own pool, its own connections) with its own
``OtlpReceiver``, as two ``serve`` processes are. Every pair is sent concurrently, one span to
each, so each side's lookups miss the other's uncommitted span; the link must still be made.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from apihelpers import start_server
from otlphelpers import (
    CHAT,
    PROTOBUF,
    agent_attrs,
    log,
    logs,
    new_span,
    new_trace,
    partial_success,
    send,
    span,
    traces,
)

from orchestrator_db import DatabaseManager
from orchestrator_db.otlp import OtlpReceiver
from orchestrator_db.otlp.plan import implicit_agent_id
from orchestrator_db.otlp.spans import SpanView, views
from orchestrator_db.otlp.storage import Storage
from orchestrator_db.otlp.traces import ingest_spans, stage_spans, write_staged

PAIRS = 40
SERVE_PAIRS = 60
# Pairs in flight at once: each receiver decodes at most MAX_DECODING (8) requests at a time.
AT_ONCE = 4


@pytest.fixture
async def receivers(db_url: str
                    ) -> AsyncIterator[tuple[DatabaseManager, OtlpReceiver, OtlpReceiver]]:
    """A manager to read with, and two receivers, each on its own manager (pool)."""
    async with DatabaseManager(url=db_url) as first, DatabaseManager(url=db_url) as second:
        one, two = OtlpReceiver(first), OtlpReceiver(second)
        await one.start()
        await two.start()
        try:
            yield first, one, two
        finally:
            await one.stop()
            await two.stop()


async def _concurrently(pair: Callable[..., Awaitable[None]], args: list[tuple[bytes, ...]]
                        ) -> None:
    """Run ``pair`` for each of ``args``, ``AT_ONCE`` at a time."""
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(arg: tuple[bytes, ...]) -> None:
        async with gate:
            await pair(*arg)

    await asyncio.gather(*(one(a) for a in args))


async def _export(receiver: OtlpReceiver, message: Any) -> None:
    result = await receiver.export("traces" if hasattr(message, "resource_spans") else "logs",
                                   message.SerializeToString(), PROTOBUF, None)
    assert result.rejected == 0, result.message


async def _assert_linked(db: DatabaseManager, trace: bytes, chat: bytes) -> None:
    """The trace's prompt is under its agent run, and no implicit agent is left."""
    [run] = await db.list_agents(session_id=trace.hex())
    assert run["name"] == "a"
    prompts = await db.list_prompts(session_id=trace.hex())
    assert [(p["agent_id"], p["span_id"]) for p in prompts] == [(run["id"], chat.hex())]
    assert await db.get_agent(implicit_agent_id(trace.hex())) is None


async def test_child_and_parent_through_two_processes_at_once(
        receivers: tuple[DatabaseManager, OtlpReceiver, OtlpReceiver]) -> None:
    db, one, two = receivers
    pairs = [(new_trace(), new_span(), new_span()) for _ in range(PAIRS)]

    async def pair(trace: bytes, agent: bytes, chat: bytes) -> None:
        await asyncio.gather(
            _export(one, traces([span(trace, chat, "chat", parent=agent, attrs=CHAT)])),
            _export(two, traces([span(trace, agent, "invoke_agent a", attrs=agent_attrs("a"))])))

    await _concurrently(pair, pairs)
    for trace, _, chat in pairs:
        await _assert_linked(db, trace, chat)
    assert len(await db.list_agents()) == PAIRS


async def test_log_record_and_agent_through_two_processes_at_once(
        receivers: tuple[DatabaseManager, OtlpReceiver, OtlpReceiver]) -> None:
    # The chat span is stored (under the implicit agent); its log record arrives in one process
    # while its agent run arrives in the other.
    db, one, two = receivers
    triples = [(new_trace(), new_span(), new_span()) for _ in range(PAIRS)]
    await _export(one, traces([span(t, chat, "chat", parent=agent, attrs=CHAT)
                               for t, agent, chat in triples]))

    async def pair(trace: bytes, agent: bytes, chat: bytes) -> None:
        await asyncio.gather(
            _export(one, logs([log("thinking", trace=trace, span_id=chat)])),
            _export(two, traces([span(trace, agent, "invoke_agent a", attrs=agent_attrs("a"))])))

    await _concurrently(pair, triples)
    for trace, _, chat in triples:
        await _assert_linked(db, trace, chat)
        [run] = await db.list_agents(session_id=trace.hex())
        got = await db.list_agent_logs(run["id"], log_type="log")
        assert [x["message"] for x in got] == ["thinking"]
    assert await db.list_system_logs() == []


async def test_child_and_parent_through_two_serve_processes_at_once(db_url: str) -> None:
    # As two `serve` processes behind one load balancer: each trace's chat span goes to one,
    # its agent span to the other, at the same moment.
    servers = [start_server(db_url), start_server(db_url)]
    try:
        pairs = [(new_trace(), new_span(), new_span()) for _ in range(SERVE_PAIRS)]
        async with httpx.AsyncClient(base_url=servers[0].http, timeout=60) as first, \
                httpx.AsyncClient(base_url=servers[1].http, timeout=60) as second:

            async def pair(trace: bytes, agent: bytes, chat: bytes) -> None:
                responses = await asyncio.gather(
                    send(first, traces([span(trace, chat, "chat", parent=agent, attrs=CHAT)])),
                    send(second, traces([span(trace, agent, "invoke_agent a",
                                              attrs=agent_attrs("a"))])))
                assert all(partial_success(r) == (0, "") for r in responses)

            await _concurrently(pair, pairs)
    finally:
        for server in servers:
            server.stop()
    async with DatabaseManager(url=db_url) as db:
        for trace, _, chat in pairs:
            await _assert_linked(db, trace, chat)


# The same races, made certain: one process plans a batch (its lookups), the other writes its
# batch in full, then the first writes what it planned.

Two = tuple[DatabaseManager, Storage, Storage]  # a manager to read with, two processes' storage

@pytest.fixture
async def two(db_url: str) -> AsyncIterator[Two]:
    """Two managers (pools) of the same fresh database, each with its OTLP storage."""
    async with DatabaseManager(url=db_url) as first, DatabaseManager(url=db_url) as second:
        yield first, Storage(first), Storage(second)


def _spans(*items: Any) -> list[SpanView]:
    spans, rejected, _ = views(traces(list(items)))
    assert rejected == 0
    return spans


async def _assert_trace(db: DatabaseManager, trace: bytes, chat: bytes,
                        logged: tuple[bytes, ...] = ()) -> None:
    await _assert_linked(db, trace, chat)
    [run] = await db.list_agents(session_id=trace.hex())
    assert sorted(x["span_id"] for x in await db.list_agent_logs(run["id"])) == sorted(
        s.hex() for s in logged)


async def test_the_parent_written_while_the_child_was_planned(two: Two) -> None:
    db, one, other = two
    trace, agent, chat = new_trace(), new_span(), new_span()
    staged = await stage_spans(one, _spans(span(trace, chat, "chat", parent=agent, attrs=CHAT)))
    await ingest_spans(other, _spans(span(trace, agent, "invoke_agent a",
                                          attrs=agent_attrs("a"))))
    await write_staged(one, staged)
    await _assert_trace(db, trace, chat)


async def test_the_child_written_while_the_parent_was_planned(two: Two) -> None:
    db, one, other = two
    trace, agent, chat = new_trace(), new_span(), new_span()
    staged = await stage_spans(one, _spans(span(trace, agent, "invoke_agent a",
                                                attrs=agent_attrs("a"))))
    await ingest_spans(other, _spans(span(trace, chat, "chat", parent=agent, attrs=CHAT)))
    await write_staged(one, staged)
    await _assert_trace(db, trace, chat)


async def test_the_agent_written_while_a_grandchild_was_planned(two: Two) -> None:
    # The chat's parent (a step) is stored, held by the implicit agent: the chat is planned
    # under it too, and meanwhile the agent above the step arrives and moves the step.
    db, one, other = two
    trace, agent, step, chat = new_trace(), new_span(), new_span(), new_span()
    await ingest_spans(one, _spans(span(trace, step, "step", parent=agent)))
    staged = await stage_spans(one, _spans(span(trace, chat, "chat", parent=step, attrs=CHAT)))
    await ingest_spans(other, _spans(span(trace, agent, "invoke_agent a",
                                          attrs=agent_attrs("a"))))
    await write_staged(one, staged)
    await _assert_trace(db, trace, chat, (step,))


async def test_both_written_before_either_commits(pg_url: str) -> None:
    # PostgreSQL: the child's transaction has looked for its parent and is held (by a lock this
    # test takes) before it commits; the parent's transaction runs from start to end meanwhile,
    # and neither sees the other's span. The child's writer looks again once it has committed.
    # (The chat names its own session: writers of one session's agents wait for each other on
    # its ``sessions`` row, which would order them.)
    async with DatabaseManager(url=pg_url) as first, DatabaseManager(url=pg_url) as second:
        one, other = Storage(first), Storage(second)
        trace, agent, chat = new_trace(), new_span(), new_span()
        # Another trace whose held chat the child's batch adopts: its implicit agent is then
        # emptied, and locked first, at the end of the transaction.
        elsewhere, boss, waiting = new_trace(), new_span(), new_span()
        await ingest_spans(one, _spans(span(elsewhere, waiting, "chat", parent=boss,
                                            attrs=CHAT)))
        base, _, schema = pg_url.partition("?search_path=")
        conn = await asyncpg.connect(base, server_settings={"search_path": schema})
        try:
            lock = conn.transaction()
            await lock.start()
            await conn.fetch("SELECT id FROM agents WHERE id = $1 FOR UPDATE",
                             uuid.UUID(implicit_agent_id(elsewhere.hex())))
            child = asyncio.create_task(ingest_spans(one, _spans(
                span(trace, chat, "chat", parent=agent,
                     attrs={**CHAT, "gen_ai.conversation.id": "child-session"}),
                span(elsewhere, boss, "invoke_agent boss", attrs=agent_attrs("boss")))))
            for _ in range(500):  # until the child's transaction waits for the lock
                if await conn.fetchval("SELECT count(*) FROM pg_stat_activity "
                                       "WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"):
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("the child's transaction never waited for the lock")
            await asyncio.wait_for(ingest_spans(other, _spans(
                span(trace, agent, "invoke_agent a", attrs=agent_attrs("a")))), 30)
            await lock.rollback()
            await asyncio.wait_for(child, 30)
        finally:
            await conn.close()
        [run] = [a for a in await first.list_agents() if a["trace_id"] == trace.hex()]
        assert run["name"] == "a"
        assert [p["agent_id"] for p in await first.list_prompts()
                if p["trace_id"] == trace.hex()] == [run["id"]]
        assert await first.get_agent(implicit_agent_id(trace.hex())) is None
        [boss_run] = await first.list_agents(session_id=elsewhere.hex())
        assert [p["agent_id"] for p in await first.list_prompts(session_id=elsewhere.hex())
                ] == [boss_run["id"]]
