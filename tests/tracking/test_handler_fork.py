"""The logging handler in forked processes: each record written once, none lost uncounted."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from orchestrator_db import DatabaseManager

SCRIPT = textwrap.dedent('''
    import logging, multiprocessing, os, sys
    from orchestrator_db import OrchestratorDBHandler

    handler = OrchestratorDBHandler(sys.argv[1], batch_size=10_000, flush_interval_ms=2_000)
    log = logging.getLogger("fork")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    for i in range(100):  # still queued when the process forks (a long flush interval)
        log.info("parent %d", i)
    pid = os.fork()
    if pid == 0:
        log.info("forked child")
        handler.flush()
        print("child", handler.written, handler.failed, handler.restarts, flush=True)
        handler.close()
        os._exit(0)
    os.waitpid(pid, 0)

    def work(i):
        logging.getLogger("fork").info("worker %d", i)  # then os._exit, past logging's atexit

    workers = [multiprocessing.get_context("fork").Process(target=work, args=(i,))
               for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    handler.close()
    log.info("after close")
    print("parent", handler.written, handler.failed, handler.dropped, flush=True)
''')


async def test_forked_children_write_their_own_records_once(db: DatabaseManager, db_url: str,
                                                           tmp_path: Path) -> None:
    script = tmp_path / "forks.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), db_url], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    # The child counts its own record only; the parent's queued 100 are the parent's to write.
    assert done.stdout.splitlines() == ["child 1 0 0", "parent 100 0 1"]
    assert "died" not in done.stderr
    assert done.stderr.count("logged after close() are dropped") == 1
    messages = [r["message"] async for r in db.iter_system_logs(source="fork")]
    assert sorted(messages) == sorted([f"parent {i}" for i in range(100)] + ["forked child"]
                                      + [f"worker {i}" for i in range(3)])
