"""Helpers of the CLI tests: run the command in-process or as a real subprocess, sample data."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

from typer.testing import CliRunner

from orchestrator_db import DatabaseManager
from orchestrator_db.cli import app


def invoke(*args: str) -> Any:
    """Run the command in-process (typer's CliRunner); stdout and stderr kept apart."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})


def run(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m orchestrator_db.cli ARGS`` as a real process."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "ORCHESTRATOR_DB_PATH", "DATABASE_PATH")}
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "orchestrator_db.cli", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


# A process started in the background of a non-interactive shell inherits SIGINT ignored (POSIX),
# and Python then installs no KeyboardInterrupt handler: a test's Ctrl-C would do nothing when
# the tests themselves run that way. The child takes back SIGINT's default handler first.
_INTERRUPTIBLE_CLI = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('orchestrator_db.cli', run_name='__main__', alter_sys=True)")


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``python -m orchestrator_db.cli ARGS`` as a real process that SIGINT stops."""
    return subprocess.Popen([sys.executable, "-c", _INTERRUPTIBLE_CLI, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def interrupt(proc: subprocess.Popen[str]) -> str:
    """Stop ``proc`` as Ctrl-C does (killed if it has not ended 30 s later), close its pipes;
    return what it wrote to stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    return err


def sample_data(url: str) -> dict[str, Any]:
    """Two sessions with agents, prompts and logs; returns their ids."""
    async def go() -> dict[str, Any]:
        async with DatabaseManager(url=url) as db:
            planner = await db.create_orchestrator_agent("planner", agent_type="llm",
                                                         default_model="opus")
            builder = await db.create_orchestrator_agent("builder")
            a1 = await db.create_agent(planner, "run-1", name="plan", model="opus")
            a2 = await db.create_agent(builder, "run-2", model="sonnet")
            await db.update_agent_status(a1, "completed")
            await db.update_agent_status(a2, "failed")
            prompt = await db.create_prompt(a1, "Plan it")
            await db.complete_prompt(prompt, "ok", tokens_input=1000, tokens_output=200,
                                     cost_usd=0.25)
            await db.create_agent_logs([
                {"agent_id": a1, "message": f"step {i}", "log_level": "INFO",
                 "details": {"i": i}} for i in range(5)])
            await db.create_agent_log(a1, "careful [red]not markup[/red]", log_level="WARNING")
            await db.create_agent_log(a2, "it broke", log_level="ERROR", log_type="state_change")
            await db.create_system_log("orchestrator up", source="main")
            return {"planner": planner, "a1": a1, "a2": a2}
    return asyncio.run(go())
