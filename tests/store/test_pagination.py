"""Keyset pagination: every row exactly once, stable (created_at, id) order, ties by id."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator_db import DatabaseManager, ValidationError


async def test_walk_every_row_once_while_inserting(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    before = await db.create_agent_logs(
        [{"agent_id": agent, "message": f"before {i}"} for i in range(250)]
    )
    inserting = True
    added: list[str] = []

    async def writer() -> None:
        i = 0
        while inserting:
            added.append(await db.create_agent_log(agent, f"during {i}"))
            i += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await db.page_agent_logs(agent, limit=7, cursor=cursor)
        seen += [r["id"] for r in page.items]
        pages += 1
        await asyncio.sleep(0)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    inserting = False
    await task
    assert pages > 250 // 7
    assert len(seen) == len(set(seen)), "a row was returned twice"
    assert seen[:250] == before, "rows written before the walk come first, in order"
    # Rows added while walking appear in order after them; those added after the last page are
    # simply not yet seen.
    assert seen[250:] == added[: len(seen) - 250]
    assert set(before) | set(added) >= set(seen)


async def test_ties_on_created_at_are_ordered_by_id(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    same = "2026-11-23T11:50:12.123456+00:00"
    ids = await db.create_agent_logs(
        [{"agent_id": agent, "message": str(i), "created_at": same} for i in range(20)]
    )
    walked: list[str] = []
    cursor = None
    while True:
        page = await db.page_agent_logs(agent, limit=3, cursor=cursor)
        walked += [r["id"] for r in page.items]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert walked == sorted(ids)
    desc: list[str] = []
    cursor = None
    while True:
        page = await db.page_agent_logs(agent, limit=6, cursor=cursor, order="desc")
        desc += [r["id"] for r in page.items]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert desc == sorted(ids, reverse=True)


async def test_last_page_has_no_cursor_and_filters_hold_across_pages(db: DatabaseManager) -> None:
    await db.create_system_logs(
        [{"message": str(i), "log_level": "ERROR" if i % 3 == 0 else "INFO"} for i in range(30)]
    )
    page = await db.page_system_logs(log_level="ERROR", limit=4)
    messages = [r["message"] for r in page.items]
    while page.next_cursor:
        page = await db.page_system_logs(log_level="ERROR", limit=4, cursor=page.next_cursor)
        messages += [r["message"] for r in page.items]
    assert messages == [str(i) for i in range(0, 30, 3)]
    exact = await db.page_system_logs(limit=30)
    assert len(exact.items) == 30 and exact.next_cursor is None


async def test_offset_is_accepted(db: DatabaseManager) -> None:
    await db.create_system_logs([{"message": str(i)} for i in range(10)])
    rows = await db.list_system_logs(limit=3, offset=4)
    assert [r["message"] for r in rows] == ["4", "5", "6"]


async def test_iter_streams_everything(db: DatabaseManager) -> None:
    await db.create_system_logs([{"message": str(i)} for i in range(2500)])
    messages = [r["message"] async for r in db.iter_system_logs()]
    assert messages == [str(i) for i in range(2500)]
    later = await db.create_system_logs([{"message": f"later {i}"} for i in range(1500)])
    since = (await db.get_system_log(later[0]) or {})["created_at"]
    tail = [r["id"] async for r in db.iter_system_logs(since=since)]
    assert tail == later


@pytest.mark.parametrize("paging", [{"offset": 5}, {"limit": 10}, {"cursor": None}])
async def test_iter_refuses_paging_arguments(db: DatabaseManager, paging: dict[str, Any]) -> None:
    # offset skipped 5 rows of every 1,000-row page; limit and cursor were a bare TypeError.
    await db.create_system_logs([{"message": "x"}])
    with pytest.raises(ValidationError, match="iter_\\* reads every row") as caught:
        [r async for r in db.iter_system_logs(**paging)]
    assert caught.value.field == next(iter(paging))
