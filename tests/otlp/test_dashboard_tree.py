"""The session page shows sub-agents as an indented tree with each subtree's tokens and cost.

A real server gets a trace of nested agents over OTLP; Playwright drives Debian's chromium.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apihelpers import Server, start_server
from otlphelpers import CHAT, PROTOBUF, agent_attrs, new_span, new_trace, span, traces

TIMEOUT_MS = 30_000


@pytest.fixture
def server(db_url: str) -> Iterator[Server]:
    started = start_server(db_url)
    yield started
    started.stop()


def test_session_page_shows_the_agent_tree(server: Server, browser: Any,
                                           tmp_path: Path) -> None:
    from playwright.sync_api import expect

    trace, lead, chat1, research, chat2, read, chat3 = (
        new_trace(), new_span(), new_span(), new_span(), new_span(), new_span(), new_span())
    cheap = {**CHAT, "gen_ai.usage.cost": 0.25}
    request = traces([
        span(trace, lead, "invoke_agent lead", attrs=agent_attrs(
            "lead", **{"gen_ai.conversation.id": "tree-session"})),
        span(trace, chat1, "chat", parent=lead, attrs=cheap),
        span(trace, research, "invoke_agent researcher", parent=lead,
             attrs=agent_attrs("researcher")),
        span(trace, chat2, "chat", parent=research, attrs=cheap),
        span(trace, read, "invoke_agent reader", parent=research, attrs=agent_attrs("reader")),
        span(trace, chat3, "chat", parent=read, attrs=cheap),
    ])
    response = httpx.post(f"{server.http}/v1/traces", content=request.SerializeToString(),
                          headers={"content-type": PROTOBUF}, timeout=30)
    assert response.status_code == 200

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{server.http}/#/sessions/tree-session")
        rows = page.locator("#agents tbody tr")
        expect(rows).to_have_count(3, timeout=TIMEOUT_MS)
        expect(rows.nth(0)).to_contain_text("lead")
        expect(rows.nth(1)).to_contain_text("researcher")
        expect(rows.nth(2)).to_contain_text("reader")
        assert [rows.nth(i).get_attribute("data-depth") for i in range(3)] == ["0", "1", "2"]
        # Whole subtrees: lead 3 prompts, researcher 2, reader 1 (1,200 tokens, $0.25 each).
        expect(rows.nth(0).locator("[data-subtree-tokens]")).to_have_attribute(
            "data-subtree-tokens", "3600", timeout=TIMEOUT_MS)
        assert rows.nth(1).locator("[data-subtree-tokens]").get_attribute(
            "data-subtree-tokens") == "2400"
        assert rows.nth(2).locator("[data-subtree-cost]").get_attribute(
            "data-subtree-cost") == "0.25"
        expect(rows.nth(0)).to_contain_text("$0.75")
        indent = [rows.nth(i).locator("td").first.evaluate(
            "el => parseFloat(getComputedStyle(el).paddingLeft)") for i in range(3)]
        assert indent[0] < indent[1] < indent[2]
        page.screenshot(path=str(tmp_path / "tree.png"), full_page=True)
        shutil.copy(tmp_path / "tree.png", Path("/tmp") / "session-tree.png")
    finally:
        page.close()
    assert errors == []


