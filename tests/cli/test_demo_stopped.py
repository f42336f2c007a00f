"""A demo stopped part-way (Ctrl-C, or SIGTERM from `orchestrator-db demo`) leaves no run
"executing": the runs it had started are cancelled, as track_agent does."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator_db import DatabaseManager


async def _statuses(url: str) -> list[str]:
    async with DatabaseManager(url=url) as db:
        return [a["status"] for a in await db.list_agents()]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stopped_demo_cancels_its_running_agents(tmp_path: Path, stop: signal.Signals) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator_db.demo", "--duration", "60",
                             "--url", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "demo.db").exists() or "executing" not in asyncio.run(
                _statuses(url)):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.1)
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err, err
    statuses = asyncio.run(_statuses(url))
    assert "executing" not in statuses and "cancelled" in statuses, statuses
