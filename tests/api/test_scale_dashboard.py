"""The overview in Chromium with more sessions than a page: "Show more", live reloads coalesced."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from apihelpers import Server

from orchestrator_db import DatabaseManager

TIMEOUT_MS = 30_000


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine on its own thread (Playwright's sync API holds this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _sessions(url: str, n: int) -> str:
    async with DatabaseManager(url=url) as db:
        oa = await db.create_orchestrator_agent("planner")
        agent = ""
        for i in range(n):
            agent = await db.create_agent(oa, f"s-{i:02d}", status="completed")
        return agent


async def _busy(url: str, agent: str, n: int) -> None:
    async with DatabaseManager(url=url) as db:
        for i in range(n):
            await db.create_prompt(agent, f"p{i}", cost_usd=0.5)


def test_overview_pages_sessions_and_coalesces_live_reloads(
        db_url: str, servers: Callable[..., Server], browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    newest = _run(_sessions(db_url, 30))
    server = servers(db_url)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(server.http + "/")
        rows = page.locator("#sessions tr[data-session]")
        expect(rows).to_have_count(25, timeout=TIMEOUT_MS)
        expect(rows.first).to_have_attribute("data-session", "s-29")  # newest first
        expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)
        page.click("#more-sessions")
        expect(rows).to_have_count(30, timeout=TIMEOUT_MS)
        expect(rows.last).to_have_attribute("data-session", "s-00")
        expect(page.locator("#more-sessions")).to_have_count(0)

        # Twenty prompts in a burst: the row shows their cost after one or two reloads, not
        # twenty, and the rows shown (all 30) stay shown.
        before = sum("/api/sessions" in url for url in requests)
        _run(_busy(db_url, newest, 20))
        expect(page.locator('tr[data-session="s-29"]')).to_contain_text("$10.00",
                                                                       timeout=TIMEOUT_MS)
        page.wait_for_timeout(2500)
        assert 1 <= sum("/api/sessions" in url for url in requests) - before <= 3
        expect(rows).to_have_count(30)
    finally:
        page.close()
    assert errors == []
