"""`logs` and `sessions` tell agents and retried failures apart (issue 13, item 9).

The first 8 characters of a UUIDv7 are its timestamp, the same for agents started within a
minute; `logs` showed only them. Now: the agent's name and the random tail of its id.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from cli_helpers import invoke

from orchestrator_db import DatabaseManager
from orchestrator_db.demo import run_demo


def test_logs_show_name_and_random_tail_and_sessions_the_failed_attempt(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/o.db"

    async def demo() -> list[dict[str, object]]:
        async with DatabaseManager(url=url) as db:
            await run_demo(db, duration=0, session_id="demo-labels")
            return await db.list_agents_by_session("demo-labels")

    runs = {str(a["name"]): str(a["id"]) for a in asyncio.run(demo())}
    out = invoke("logs", "--url", url, "-n", "1000").stdout
    lines = out.splitlines()
    failed = [line for line in lines if f"builder {runs['builder'][-8:]} " in line]
    retried = [line for line in lines if f"builder (retry) {runs['builder (retry)'][-8:]} " in line]
    assert failed and retried
    assert any("LLM call failed" in line for line in failed)
    assert not any(f" {runs['builder'][:8]} " in line for line in lines)  # the old column

    sessions = invoke("sessions", "--url", url).stdout
    assert "completed (1 failed attempt)" in sessions
