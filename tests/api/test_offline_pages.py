"""The API docs and the dashboard work with the network to the outside blocked (issue 13, 8 and 9).

Chromium (Playwright) aborts every request that does not go to 127.0.0.1: FastAPI's default
/docs loads Swagger UI from a CDN and was a blank page offline. The dashboard, on a demo run
whose builder failed once and was retried, shows the session as completed with one failed
attempt, and tells the two builder runs apart by the random tail of their ids.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from apihelpers import Server
from test_dashboard import SCREENSHOTS, TIMEOUT_MS

from orchestrator_db import SyncDatabaseManager


def offline_page(browser: Any) -> tuple[Any, list[str]]:
    """A page whose requests to anywhere but 127.0.0.1 are aborted (and listed)."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    blocked: list[str] = []

    def route(r: Any) -> None:
        if urlsplit(r.request.url).hostname in ("127.0.0.1", None) or r.request.url.startswith(
                ("data:", "blob:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return page, blocked


def test_api_docs_render_offline(sqlite_url: str, servers: Callable[..., Server],
                                 browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = servers(sqlite_url)
    page, blocked = offline_page(browser)
    try:
        page.goto(server.http + "/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("orchestrator-db",
                                                                         timeout=TIMEOUT_MS)
        operation = page.locator(".opblock-summary-path", has_text="/api/agent-logs").first
        expect(operation).to_be_visible(timeout=TIMEOUT_MS)
        assert page.locator(".opblock").count() > 20
        page.screenshot(path=str(tmp_path / "docs.png"))
        shutil.copy(tmp_path / "docs.png", SCREENSHOTS / "docs-offline.png")
    finally:
        page.close()
    assert blocked == []
    assert httpx.get(server.http + "/redoc").status_code == 404  # no page that needs a CDN


def _demo(url: str) -> list[dict[str, Any]]:
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "orchestrator_db.demo", "--duration", "0",
                    "--session", "demo-offline"], env=env, check=True, capture_output=True,
                   timeout=120)
    with SyncDatabaseManager(url=url) as db:
        return list(db.list_agents_by_session("demo-offline"))


def test_dashboard_offline_with_a_retried_failure(sqlite_url: str, servers: Callable[..., Server],
                                                  browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    runs = _demo(sqlite_url)
    builders = [a for a in runs if a["name"].startswith("builder")]
    assert [a["status"] for a in builders] == ["failed", "completed"]
    server = servers(sqlite_url)
    page, blocked = offline_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(server.http + "/")
        row = page.locator('tr[data-session="demo-offline"]')
        expect(row).to_contain_text("completed", timeout=TIMEOUT_MS)
        expect(row).to_contain_text("1 failed attempt")
        row.click()
        title = page.locator(".page-title")
        expect(title.locator(".badge")).to_have_text("completed", timeout=TIMEOUT_MS)
        expect(title).to_contain_text("1 failed attempt")
        agents = page.locator("#agents")
        for run in builders:  # name + the random tail (the first 8 are the same time prefix)
            cell = agents.locator(f'tr[data-agent="{run["id"]}"]')
            expect(cell).to_contain_text(run["name"])
            expect(cell).to_contain_text(run["id"][-8:])
        retry = builders[1]
        tail = page.locator("#log-tail")
        expect(tail.locator(".log-agent", has_text=retry["id"][-8:]).first).to_contain_text(
            "builder (retry)", timeout=TIMEOUT_MS)
        page.screenshot(path=str(tmp_path / "session.png"), full_page=True)
        shutil.copy(tmp_path / "session.png", SCREENSHOTS / "session-offline.png")
    finally:
        page.close()
    assert blocked == [] and errors == []
