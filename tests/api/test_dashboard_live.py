"""The live dashboard under load and under fast navigation, in a real browser against a real server.

A long log tail stays responsive, totals follow a steady stream, fast navigation leaves one
page and one socket, a failed first load recovers, narrow screens and huge amounts keep the
layout, a new page starts at its top, numbers and times follow the locale.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apihelpers import Server

from orchestrator_db import SyncDatabaseManager

TIMEOUT_MS = 30_000  # generous for a shared machine
TAIL_MAX = 1000  # session.js
SHOTS = Path("/tmp/fix_dash")


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def setup_session(db_url: str, session: str) -> str:
    with SyncDatabaseManager(url=db_url) as db:
        oa = db.create_orchestrator_agent(f"oa-{session}")
        return db.create_agent(oa, session, name="worker", model="test-model",
                               status="executing")


@pytest.fixture
def page_of(browser: Any) -> Iterator[Callable[..., Any]]:
    """New pages (bypassing the page's CSP so evaluate works), all closed after the test."""
    contexts: list[Any] = []

    def new(**kwargs: Any) -> Any:
        context = browser.new_context(bypass_csp=True, **kwargs)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors
        return page

    yield new
    for context in contexts:
        context.close()


def kpi_value(page: Any, label: str) -> str:
    return str(page.evaluate("""(label) => {
        const k = [...document.querySelectorAll(".kpi")]
            .find((el) => el.querySelector(".kpi-label").textContent === label);
        return k ? k.querySelector(".kpi-value").textContent : "";
    }""", label))


def test_long_log_tail_stays_responsive(db_url: str, servers: Callable[..., Server],
                                        page_of: Callable[..., Any]) -> None:
    """Past TAIL_MAX lines the tail drops its oldest rows instead of rebuilding all 1,000 per
    new line (which froze the page for most of a minute)."""
    from playwright.sync_api import expect

    server = servers(db_url)
    agent = setup_session(db_url, "long-tail")
    page = page_of(viewport={"width": 1280, "height": 900})
    page.goto(server.http + "/#/sessions/long-tail")
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)
    total = 3000
    with SyncDatabaseManager(url=db_url) as db:
        for start in range(0, total, 250):  # bursts, as a busy agent writes them
            db.create_agent_logs([{"agent_id": agent, "message": f"line {i}"}
                                  for i in range(start, start + 250)])
    rows = page.locator("#log-tail .log")
    expect(rows.last.locator(".log-msg")).to_have_text(f"line {total - 1}", timeout=TIMEOUT_MS)
    expect(rows).to_have_count(TAIL_MAX, timeout=TIMEOUT_MS)
    assert page.evaluate("1") == 1  # the page answers
    expect(rows.first.locator(".log-msg")).to_have_text(f"line {total - TAIL_MAX}")
    expect(page.locator("#log-tail")).not_to_contain_text(f"line {total - TAIL_MAX - 1}")
    shot(page, "long-tail.png")
    assert page.errors == []


def test_totals_follow_a_steady_stream(db_url: str, servers: Callable[..., Server],
                                       page_of: Callable[..., Any]) -> None:
    """A log or prompt every 50 ms never leaves the 400 ms quiet gap a debounce waits for: the
    totals, prompts and chart must still catch up while the stream runs."""
    from playwright.sync_api import expect

    server = servers(db_url)
    agent = setup_session(db_url, "steady")
    page = page_of(viewport={"width": 1280, "height": 900})
    page.goto(server.http + "/#/sessions/steady")
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)

    stop = threading.Event()
    written = {"prompts": 0}
    exhausted = threading.Event()

    def stream() -> None:
        with SyncDatabaseManager(url=db_url) as db:
            deadline = time.monotonic() + 90
            while not stop.is_set():
                if time.monotonic() > deadline:
                    exhausted.set()
                    return
                db.create_agent_log(agent, "tick")
                db.create_prompt(agent, "q", response="a", status="completed",
                                 tokens_input=1, tokens_output=2, cost_usd=0.01)
                written["prompts"] += 1
                time.sleep(0.05)

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    try:
        while written["prompts"] < 20 and thread.is_alive():
            time.sleep(0.05)
        summary = httpx.get(f"{server.http}/api/sessions/steady/summary", timeout=30).json()
        want = summary["prompts"]
        assert want >= 20
        page.wait_for_function("""(want) => {
            const k = [...document.querySelectorAll(".kpi")]
                .find((el) => el.querySelector(".kpi-label").textContent === "Prompts");
            const n = k ? Number(k.querySelector(".kpi-value").textContent.replace(/\\D/g, "")) : 0;
            return n >= want && document.querySelectorAll("#prompts tbody tr").length >= want;
        }""", arg=want, timeout=TIMEOUT_MS)
        # Caught up while the stream was still running, not after it stopped.
        assert thread.is_alive() and not exhausted.is_set()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert page.locator('svg[aria-label="Cumulative cost"] circle').count() >= want
    assert page.errors == []


def test_fast_navigation_leaves_one_page_and_one_socket(
        db_url: str, servers: Callable[..., Server], page_of: Callable[..., Any]) -> None:
    from playwright.sync_api import expect

    server = servers(db_url)
    setup_session(db_url, "nav-a")
    setup_session(db_url, "nav-b")
    page = page_of(viewport={"width": 1280, "height": 900})
    sockets: list[Any] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    page.goto(server.http + "/")
    expect(page.locator('tr[data-session="nav-a"]')).to_be_visible(timeout=TIMEOUT_MS)
    page.evaluate("""async () => {
        const hashes = ["#/sessions/nav-a", "#/", "#/sessions/nav-b", "#/sessions/nav-a", "#/"];
        for (let i = 0; i < 30; i++) {
            location.hash = hashes[i % hashes.length];
            if (i % 7 === 3) history.back();
            if (i % 11 === 5) history.forward();
            await new Promise((r) => setTimeout(r, i % 4));
        }
        // History traversals are queued: let them land before the last change.
        await new Promise((r) => setTimeout(r, 100));
        location.hash = "#/sessions/nav-b";
    }""")
    # History traversals land when the browser gets to them, possibly after the last change:
    # wait (bounded) until the address has stayed the same for a second, then check that the
    # page and its one socket follow it.
    hash_, steady, deadline = page.evaluate("location.hash"), 0, time.monotonic() + 30
    while steady < 5 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        now = page.evaluate("location.hash")
        hash_, steady = now, (steady + 1 if now == hash_ else 0)
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)
    match = re.match(r"^#/sessions/(.+)$", hash_)
    title = page.locator(".page-title h1")
    if match:
        expect(title).to_contain_text(match[1], timeout=TIMEOUT_MS)
        expect(page.locator("#sessions")).to_have_count(0)  # no overview underneath
    else:
        expect(page.locator("#sessions")).to_have_count(1, timeout=TIMEOUT_MS)
        expect(title).to_have_count(0)
    # Stale pages close their sockets and the page on screen opens its own: wait (bounded)
    # until exactly one is open.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        open_ = [ws for ws in sockets if not ws.is_closed()]
        if len(open_) == 1:
            break
        page.wait_for_timeout(200)
    open_ = [ws for ws in sockets if not ws.is_closed()]
    assert len(open_) == 1, [ws.url for ws in open_]
    if match:
        assert f"session_id={match[1]}" in open_[0].url
        expect(title).to_contain_text(match[1])
    else:
        assert "session_id" not in open_[0].url
    assert page.evaluate("location.hash") == hash_
    assert page.errors == []


def test_failed_load_retries_until_the_server_answers(
        db_url: str, servers: Callable[..., Server], page_of: Callable[..., Any]) -> None:
    from playwright.sync_api import expect

    server = servers(db_url)
    setup_session(db_url, "retry-me")
    page = page_of(viewport={"width": 1280, "height": 900})
    page.goto(server.http + "/")
    expect(page.locator('tr[data-session="retry-me"]')).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)

    def down(route: Any) -> None:
        route.abort()

    page.route("**/api/**", down)  # the server is unreachable
    page.evaluate("location.hash = '#/sessions/retry-me'")
    expect(page.locator(".error-box")).to_contain_text("Could not load", timeout=TIMEOUT_MS)
    # Not the previous page's "live".
    expect(page.locator("#live")).to_have_attribute("data-state", "offline", timeout=TIMEOUT_MS)
    shot(page, "offline.png")
    page.unroute("**/api/**", down)  # back
    expect(page.locator(".page-title h1")).to_contain_text("retry-me", timeout=TIMEOUT_MS)
    expect(page.locator(".error-box")).to_have_count(0)
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)


def test_prompts_fit_a_phone_and_large_amounts_fit(
        db_url: str, servers: Callable[..., Server], page_of: Callable[..., Any]) -> None:
    """At 375 px the prompts table scrolls in its card, not the page; $1e9 is not cut off on
    the chart axes or in the totals."""
    from playwright.sync_api import expect

    server = servers(db_url)
    agent = setup_session(db_url, "phone")
    with SyncDatabaseManager(url=db_url) as db:
        db.create_prompt(agent, "x" * 400, response="y" * 800, model="a-rather-long-model-name",
                         status="completed", tokens_input=123456789, tokens_output=987654321,
                         cost_usd=999_999_999.99)
    page = page_of(viewport={"width": 375, "height": 800})
    page.goto(server.http + "/#/sessions/phone")
    expect(page.locator("#prompts tbody tr")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(page.locator('svg[aria-label="Cumulative cost"]')).to_be_visible()
    shot(page, "phone-session.png")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), \
        page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    check = """() => {
        const cut = [];
        for (const t of document.querySelectorAll("svg.chart text.axis")) {
            if (t.getBBox().x < 0) cut.push(t.textContent);
        }
        for (const v of document.querySelectorAll(".kpi-value")) {
            if (v.scrollWidth > v.clientWidth + 1) cut.push(v.textContent);
        }
        return cut;
    }"""
    assert page.evaluate(check) == []
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(server.http + "/")
    expect(page.locator('svg[aria-label="Cost per day"]')).to_be_visible(timeout=TIMEOUT_MS)
    shot(page, "large-amounts-overview.png")
    assert page.evaluate(check) == []
    assert page.errors == []


def test_opening_a_session_starts_at_the_top(
        db_url: str, servers: Callable[..., Server], page_of: Callable[..., Any]) -> None:
    from playwright.sync_api import expect

    server = servers(db_url)
    for i in range(12):
        setup_session(db_url, f"scroll-{i:02d}")
    page = page_of(viewport={"width": 800, "height": 400})
    page.goto(server.http + "/")
    row = page.locator('tr[data-session="scroll-00"]')
    expect(row).to_be_visible(timeout=TIMEOUT_MS)
    row.scroll_into_view_if_needed()
    assert page.evaluate("scrollY") > 200
    row.locator("a").click()
    expect(page.locator(".page-title h1")).to_contain_text("scroll-00", timeout=TIMEOUT_MS)
    expect(page.locator("#log-tail")).to_be_visible()
    assert page.evaluate("scrollY") == 0


@pytest.mark.parametrize(("locale", "want_cost"), [("de-DE", "$0,0032"), ("en-US", "$0.0032")])
def test_small_costs_and_clock_follow_the_locale(
        db_url: str, servers: Callable[..., Server], page_of: Callable[..., Any], locale: str,
        want_cost: str) -> None:
    server = servers(db_url)
    page = page_of(locale=locale)
    page.goto(server.http + "/")
    got = page.evaluate("""async () => {
        const { fmtCost } = await import("/static/dom.js");
        return fmtCost(0.0032);
    }""")
    assert got == want_cost
    page2 = page_of(locale="ar-EG")
    page2.goto(server.http + "/")
    clock = page2.evaluate("""async () => {
        const { fmtClock } = await import("/static/dom.js");
        return fmtClock("2026-01-02T03:04:05.678Z");
    }""")
    assert not re.search(r"[0-9]", clock), clock  # all Arabic-Indic digits, none mixed in


def test_malformed_session_address_and_honest_session_count(
        db_url: str, servers: Callable[..., Server], page_of: Callable[..., Any]) -> None:
    from playwright.sync_api import expect

    server = servers(db_url)
    for i in range(26):  # one more than a page of the table
        setup_session(db_url, f"many-{i:02d}")
    page = page_of(viewport={"width": 1280, "height": 900})
    page.goto(server.http + "/#/sessions/100%")
    box = page.locator(".error-box")
    expect(box).to_contain_text("Not found", timeout=TIMEOUT_MS)
    expect(box).not_to_contain_text("URI malformed")
    page.goto(server.http + "/#/")
    expect(page.locator("#sessions tbody tr")).to_have_count(25, timeout=TIMEOUT_MS)
    expect(page.locator(".kpi-label").first).to_have_text("Sessions shown")
    assert kpi_value(page, "Sessions shown") == "25"
