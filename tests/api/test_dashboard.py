"""The dashboard in a real browser (Playwright driving Debian's chromium) against a real server.

It lists sessions, shows a session's prompts with LLM output as literal text (no HTML, no
script), and tails logs written by another process without a reload.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
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
        # One clock on the page: the agents table said "03:58:31 PM" beside the log's 15:58:31.
        assert not re.search(r"\b[AP]M\b", page.locator("main").inner_text())
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


def test_cost_axes_label_round_amounts(db_url: str, servers: Callable[..., Server],
                                       browser: object) -> None:
    """Gridlines fall on round amounts, labelled with the decimals their step needs: a step of
    $0.025 labelled to the cent used to read $0.03 and $0.08 at $0.025 and $0.075."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    server = servers(db_url)
    made = run_writer(db_url, "setup", "axis-session")
    run_writer(db_url, "prompt", made["agent_id"], "one prompt", "costing $0.01")
    page = browser.new_page(bypass_csp=True)  # the page's policy forbids evaluate's eval
    try:
        page.goto(server.http + "/")
        axis = page.locator('svg[aria-label="Cost per day"] text.axis')
        expect(axis.first).to_be_visible(timeout=TIMEOUT_MS)
        # The day's $0.01 in four steps of $0.005, to a tenth of a cent.
        shown = [t for t in axis.all_text_contents() if t.startswith("$")]
        assert shown == ["$0.000", "$0.005", "$0.010", "$0.015", "$0.020"]
        labels = page.evaluate("""async () => {
            const { costAxis } = await import("/static/chart.js");
            const out = {};
            for (const [value, n] of [[0.07, 4], [0.1, 4], [0, 4], [1234, 4], [0.0003, 3],
                                      [2.5, 3], [0.06, 3], [1e-9, 4]]) {
                const axis = costAxis(value, n);
                out[`${value}/${n}`] = [axis.max, axis.ticks.map((t) => t.label)];
            }
            return out;
        }""")
    finally:
        page.close()
    want = {
        "0.07/4": (0.08, ["$0.00", "$0.02", "$0.04", "$0.06", "$0.08"]),
        "0.1/4": (0.2, ["$0.00", "$0.05", "$0.10", "$0.15", "$0.20"]),
        "0/4": (0.04, ["$0.00", "$0.01", "$0.02", "$0.03", "$0.04"]),
        "1234/4": (2000, ["$0.00", "$500.00", "$1,000.00", "$1,500.00", "$2,000.00"]),
        "0.0003/3": (0.0003, ["$0.0000", "$0.0001", "$0.0002", "$0.0003"]),
        "2.5/3": (3, ["$0.00", "$1.00", "$2.00", "$3.00"]),
        "0.06/3": (0.06, ["$0.00", "$0.02", "$0.04", "$0.06"]),
        "1e-9/4": (4e-6, ["$0.000000", "$0.000001", "$0.000002", "$0.000003", "$0.000004"]),
    }
    assert {k: v[1] for k, v in labels.items()} == {k: v[1] for k, v in want.items()}
    assert {k: v[0] for k, v in labels.items()} == pytest.approx({k: v[0] for k, v in want.items()})


def test_long_and_right_to_left_values_keep_the_layout(db_url: str, tmp_path: Path,
                                                       servers: Callable[..., Server],
                                                       browser: object) -> None:
    # Values at their limits wrap inside their cards; a name with a bidi override is isolated,
    # so it cannot reorder the id after it; the log message keeps a readable width.
    from playwright.sync_api import Browser

    from orchestrator_db import SyncDatabaseManager

    assert isinstance(browser, Browser)
    session = "S" * 200
    with SyncDatabaseManager(url=db_url) as db:
        oa = db.create_orchestrator_agent("N" * 200)
        agent = db.create_agent(oa, session, name="ab\u202ecd" + "n" * 150)
        prompt = db.create_prompt(agent, "p" * 3000)
        db.complete_prompt(prompt, "r" * 5000, cost_usd=0.5)
        db.create_agent_log(agent, "LLM call failed: upstream timeout after 60 s")
    server = servers(db_url)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(server.http + "/")
        page.locator(f'tr[data-session="{session}"]').wait_for(timeout=TIMEOUT_MS)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        page.goto(server.http + "/#/sessions/" + session)
        message = page.locator("#log-tail .log-msg").first
        message.wait_for(timeout=TIMEOUT_MS)
        page.screenshot(path=str(tmp_path / "long-values.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        assert message.bounding_box()["width"] > 300  # type: ignore[index]
        name = "ab\u202ecd" + "n" * 150
        for label in (page.locator("#prompts .agent-label").first,
                      page.locator("#agents .agent-name").first):
            # The name, isolated: its override cannot reach the id or text after it.
            assert label.locator("bdi").count() == 1
            assert label.locator("bdi").text_content() == name
    finally:
        page.close()
