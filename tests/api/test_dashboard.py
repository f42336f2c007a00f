"""The dashboard in a real browser (Playwright driving Debian's chromium) against a real server.

It lists sessions, shows a session's prompts with LLM output as literal text (no HTML, no
script), and tails logs written by another process without a reload.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from apihelpers import Server, run_writer

TIMEOUT_MS = 30_000  # generous for a shared machine; normally well under a second
XSS = "<script>alert(1)</script><b>x</b>"
SCREENSHOTS = Path("/tmp")  # also saved here for a human to look at


def test_dashboard(db_url: str, servers: Callable[..., Server], browser: object,
                   tmp_path: Path) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    server = servers(db_url)
    made = run_writer(db_url, "setup", "dash-session")
    agent_id = made["agent_id"]
    run_writer(db_url, "prompt", agent_id, "Summarise the page <i>please</i>", XSS)
    run_writer(db_url, "logs", agent_id, "3", "warming up")

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        # The overview lists the session with its status and cost.
        page.goto(server.http + "/")
        row = page.locator('tr[data-session="dash-session"]')
        expect(row).to_be_visible(timeout=TIMEOUT_MS)
        expect(row).to_contain_text("executing")
        expect(row).to_contain_text("$0.01")
        expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        shutil.copy(tmp_path / "dashboard.png", SCREENSHOTS / "dashboard.png")

        # The session page shows the LLM response as literal text.
        row.click()
        prompts = page.locator("#prompts")
        expect(prompts.locator(".response-preview")).to_have_text(XSS, timeout=TIMEOUT_MS)
        expect(prompts.locator(".prompt-preview")).to_have_text("Summarise the page <i>please</i>")
        assert prompts.locator("b, i, script").count() == 0
        assert page.locator("script").count() == 1  # only the dashboard's own module
        expect(page.locator("#agents")).to_contain_text("writer")
        expect(page.locator("#log-tail")).to_contain_text("warming up 2", timeout=TIMEOUT_MS)
        expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)

        # A log line written by another process appears without a reload.
        run_writer(db_url, "logs", agent_id, "1", "live line from elsewhere")
        expect(page.locator("#log-tail")).to_contain_text("live line from elsewhere 0",
                                                          timeout=TIMEOUT_MS)

        # The level filter hides lower levels, now and for new lines.
        page.select_option("#level-filter", "ERROR")
        expect(page.locator("#log-tail")).not_to_contain_text("warming up")
        run_writer(db_url, "logs", agent_id, "1", "quiet info", "INFO")
        run_writer(db_url, "logs", agent_id, "1", "boom", "ERROR")
        expect(page.locator("#log-tail")).to_contain_text("boom 0", timeout=TIMEOUT_MS)
        expect(page.locator("#log-tail")).not_to_contain_text("quiet info")
        page.select_option("#level-filter", "DEBUG")
        expect(page.locator("#log-tail")).to_contain_text("quiet info 0")
        page.screenshot(path=str(tmp_path / "session.png"), full_page=True)
        shutil.copy(tmp_path / "session.png", SCREENSHOTS / "session.png")
    finally:
        page.close()
    assert dialogs == []
    assert errors == []
