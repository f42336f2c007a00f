"""SIGKILL a process writing through the handler and create_agent_log: nothing it reported as
committed is lost, and the SQLite file stays intact."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator_db import DatabaseManager

WRITER = textwrap.dedent(
    """
    import asyncio, logging, sys
    from orchestrator_db import DatabaseManager, OrchestratorDBHandler

    url, agent_id, run = sys.argv[1], sys.argv[2], sys.argv[3]

    async def main():
        async with DatabaseManager(url=url) as db:
            handler = OrchestratorDBHandler(url, batch_size=40, flush_interval_ms=5)
            log = logging.getLogger("crash")
            log.propagate = False
            log.setLevel(logging.INFO)
            log.addHandler(handler)
            print("ready", flush=True)
            i = 0
            while True:
                log_id = await db.create_agent_log(agent_id, f"{run} direct {i}")
                print(f"D {log_id}", flush=True)  # printed only once the await returned
                for j in range(25):
                    log.info("%s handler %d %d", run, i, j, extra={"agent_id": agent_id})
                if i % 4 == 3:
                    handler.flush()
                    print(f"H {i}", flush=True)  # every handler record up to i is committed
                i += 1

    asyncio.run(main())
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
async def test_sigkill_at_random_moments_loses_nothing_committed(sqlite_url: str) -> None:
    async with DatabaseManager(url=sqlite_url) as db:
        oa = await db.create_orchestrator_agent("o")
        agent = await db.create_agent(oa, "s")
        path = Path(db.db_path or "")
    rng = random.Random(20261123)
    expected_direct: set[str] = set()
    expected_handler: set[str] = set()
    for run in range(10):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, sqlite_url, agent, f"run{run}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, err
        lines = out.split("\n")[:-1]  # the last piece may be a line cut by the kill
        for line in lines:
            kind, _, value = line.partition(" ")
            if kind == "D":
                expected_direct.add(value)
            elif kind == "H":
                upto = int(value)
                expected_handler.update(f"run{run} handler {i} {j}" for i in range(upto + 1)
                                        for j in range(25))
    assert expected_direct and expected_handler, "the writers never got to report a commit"

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        ids = {r[0] for r in conn.execute("SELECT id FROM agent_logs")}
        messages = {r[0] for r in conn.execute("SELECT message FROM agent_logs")}
    finally:
        conn.close()
    assert expected_direct <= ids
    assert expected_handler <= messages
    async with DatabaseManager(url=sqlite_url) as db:  # and it still opens and writes
        await db.create_agent_log(agent, "after the crashes")
