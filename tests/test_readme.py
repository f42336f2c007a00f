"""The README's snippets run verbatim, in a fresh directory, twice, after the demo (issue 13, 10).

The blocks are read from README.md itself, so they cannot drift from what is tested: the first
```bash block's commands (the package is already installed here, and `pytest` is this run, so
only `orchestrator-db demo` runs, on a free port with a 1-second run, until its writer is done),
then every ```python block, twice. A block that starts with `# pip install ...` needs packages
and services of its own (an LLM provider) and is only checked to compile.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SETTINGS = ("DATABASE_URL", "ORCHESTRATOR_DB_PATH", "DATABASE_PATH", "ORCHESTRATOR_HOST",
            "ORCHESTRATOR_PORT", "ORCHESTRATOR_API_TOKEN", "ORCHESTRATOR_RETENTION_DAYS",
            "PYTHONPATH")


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)


def commands(block: str) -> list[str]:
    """The commands of a bash block, one per `&&` step, comments dropped."""
    out = []
    for line in block.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out += [part.strip() for part in line.split("&&")]
    return out


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return {**clean, "COLUMNS": "200"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def orchestrator_db() -> list[str]:
    script = Path(sys.executable).parent / "orchestrator-db"
    return [str(script)] if script.exists() else [sys.executable, "-m", "orchestrator_db.cli"]


def run_demo_as_the_readme_says(command: str, cwd: Path) -> None:
    """`orchestrator-db demo`: serve, let its writer finish the simulated run, then Ctrl-C."""
    args = shlex.split(command)
    assert args[:2] == ["orchestrator-db", "demo"], command
    proc = subprocess.Popen([*orchestrator_db(), *args[1:], "--port", str(free_port()),
                             "--duration", "1"], cwd=cwd, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            time.sleep(0.5)
            assert proc.poll() is None, proc.communicate()
            if not (cwd / "data/orchestrator.db").exists():
                continue
            listed = subprocess.run([*orchestrator_db(), "sessions", "--json"], cwd=cwd, env=env(),
                                    capture_output=True, text=True, timeout=60)
            sessions = json.loads(listed.stdout or "[]")
            if any(s["session_id"].startswith("demo-") and s["status"] == "completed"
                   for s in sessions):
                break
        else:
            pytest.fail("the demo's writer did not finish its run")
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)
    assert "dashboard:" in out


def test_readme_blocks_run_twice_after_the_demo(tmp_path: Path) -> None:
    first_bash = commands(blocks("bash")[0])
    assert first_bash == ["pip install .", "orchestrator-db demo", "pip install -e '.[test]'",
                          "pytest"]
    # installed already (this environment); `pytest` is this very run
    run_demo_as_the_readme_says(first_bash[1], tmp_path)

    python_blocks = blocks("python")
    runnable = [b for b in python_blocks if not b.startswith("# pip install")]
    assert len(runnable) >= 3
    for block in python_blocks:
        compile(block, "README.md", "exec")
    for attempt in (1, 2):
        for i, block in enumerate(runnable):
            script = tmp_path / f"readme_block_{i}.py"
            script.write_text(block)
            result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env(),
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, (attempt, block, result.stderr)
            assert result.stdout.strip(), f"block {i} printed nothing"
            assert "Traceback" not in result.stderr
    tracking = next(i for i, b in enumerate(runnable) if "track_agent" in b)
    rerun = subprocess.run([sys.executable, f"readme_block_{tracking}.py"], cwd=tmp_path,
                           env=env(), capture_output=True, text=True, timeout=120)
    assert re.search(r"agent run [0-9a-f-]{36}: completed", rerun.stdout), rerun.stdout
    assert re.search(r"handler: \d+ records written, 0 refused", rerun.stdout), rerun.stdout
