"""Helpers for the service tests: real ``orchestrator-db serve`` processes and writer processes.

Servers are started with ``--port 0`` and report the port uvicorn bound (no port races);
writers are separate Python processes running ``writer.py``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
WRITER = HERE / "writer.py"
START_TIMEOUT = 60.0
RUNNING = re.compile(r"Uvicorn running on https?://[^:]+:(\d+)")


@dataclass
class Server:
    """A real ``orchestrator-db serve`` process."""

    proc: subprocess.Popen[str]
    port: int
    output: list[str] = field(default_factory=list)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _reader(proc: subprocess.Popen[str], lines: queue.Queue[str | None], keep: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        keep.append(line)
        lines.put(line)
    lines.put(None)
    proc.stdout.close()


def start_server(url: str, *, host: str = "127.0.0.1", env: dict[str, str] | None = None
                 ) -> Server:
    """Start ``orchestrator-db serve`` on a free port; return once it accepts requests."""
    cmd = [sys.executable, "-c", "from orchestrator_db.cli import main; main()", "serve",
           "--host", host, "--port", "0", "--url", url, "--log-level", "info"]
    full_env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_API_TOKEN"}
    full_env.update(env or {})
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=full_env)
    lines: queue.Queue[str | None] = queue.Queue()
    keep: list[str] = []
    threading.Thread(target=_reader, args=(proc, lines, keep), daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            proc.kill()
            proc.wait()
            raise RuntimeError("server did not start in time:\n" + "".join(keep)) from None
        if line is None:
            proc.wait()
            raise RuntimeError(f"server exited with {proc.returncode}:\n" + "".join(keep))
        match = RUNNING.search(line)
        if match:
            return Server(proc, int(match.group(1)), keep)


def run_writer(url: str, *args: str) -> Any:
    """Run ``writer.py`` in its own process and return the JSON it prints."""
    result = subprocess.run([sys.executable, str(WRITER), url, *args], capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"writer failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout)


def error_of(response: Any, status: int, type_: str, field: str | None = None
             ) -> dict[str, Any]:
    """Assert the one error shape (an httpx response) and return its inner object."""
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "field"}
    assert body["error"]["type"] == type_ and body["error"]["field"] == field, body
    assert body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]

