"""Fixtures of the fuzz suite: a SQLite file and a fresh PostgreSQL schema, open side by side.

At the end of the run the cases tried per category are printed (and written as JSON to
``$FUZZ_REPORT`` when it is set): docs/reliability.md quotes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import pytest
from fuzz_inputs import TALLY, Engines

from orchestrator_db import DatabaseManager


@pytest.fixture
async def engines(tmp_path, pg_url: str) -> AsyncIterator[Engines]:  # type: ignore[no-untyped-def]
    """A connected manager on SQLite and one on PostgreSQL, both on empty databases."""
    async with DatabaseManager(url=f"sqlite:///{tmp_path}/fuzz.db") as lite, \
            DatabaseManager(url=pg_url) as pg:
        yield Engines(lite, pg)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    categories = sorted({category for category, _ in TALLY})
    terminalreporter.section("fuzz cases per category")
    report = {}
    for category in categories:
        outcomes = {o: n for (c, o), n in sorted(TALLY.items()) if c == category}
        report[category] = outcomes
        shown = ", ".join(f"{o} {n}" for o, n in outcomes.items())
        terminalreporter.write_line(f"{category:<28} {sum(outcomes.values()):>6}  ({shown})")
    if path := os.environ.get("FUZZ_REPORT"):
        with open(path, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=1, sort_keys=True)
