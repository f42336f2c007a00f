"""A handler left to logging.shutdown at interpreter exit writes every record and closes quietly."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator_db import DatabaseManager

RECORDS = 300

# Never closed by the script: logging's atexit hook closes the handler, after concurrent.futures
# has stopped every executor's threads. The first atexit hook registered runs last: it says
# whether the SQLite connections were closed (the WAL checkpointed and removed) by then.
SCRIPT = textwrap.dedent(
    """
    import atexit, os, sys
    path, n = sys.argv[1], int(sys.argv[2])
    atexit.register(lambda: print("wal left:", os.path.exists(path + "-wal"), flush=True))

    import logging
    from orchestrator_db import OrchestratorDBHandler

    log = logging.getLogger("exit")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(OrchestratorDBHandler(path))
    for i in range(n):
        log.info("record %d", i)
    """
)


def run_and_exit(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    script = tmp_path / "exit_without_close.py"
    script.write_text(SCRIPT)
    path = tmp_path / "exit.db"
    done = subprocess.run([sys.executable, str(script), str(path), str(RECORDS)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done, path


def stored_messages(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT message FROM system_logs WHERE source = 'exit'").fetchall()
    conn.close()
    return sorted(r[0] for r in rows)


def test_records_written_and_no_false_report_of_drops(tmp_path: Path) -> None:
    done, path = run_and_exit(tmp_path)
    assert stored_messages(path) == sorted(f"record {i}" for i in range(RECORDS))
    # Nothing was dropped: closing must not be reported as a failure to record drops.
    assert "dropped" not in done.stderr, done.stderr


def test_connections_closed_quietly_at_exit(tmp_path: Path) -> None:
    done, path = run_and_exit(tmp_path)
    assert done.stderr == ""
    assert done.stdout == "wal left: False\n"
    assert len(stored_messages(path)) == RECORDS


async def test_connection_closed_when_its_thread_no_longer_takes_work(sqlite_url: str) -> None:
    # What interpreter exit does to the writer's store before logging.shutdown closes it.
    db = await DatabaseManager(url=sqlite_url).connect()
    connection = db.store.connection  # type: ignore[attr-defined]
    conn = connection.get()
    connection._executor.shutdown()
    await connection.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        conn.execute("SELECT 1")
    await db.close()
