"""A simulated orchestrator run, written live so the dashboard has something to show.

One session: a planner, a builder that fails its first attempt, a second builder and a reviewer,
each with prompts (tokens, cost) and log lines at every level, spread over ``duration`` seconds.
Run on its own with ``python -m orchestrator_db.demo`` (database from the usual resolution:
``DATABASE_URL``, ``ORCHESTRATOR_DB_PATH`` or ``data/orchestrator.db``); ``orchestrator-db demo``
starts it next to the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
from datetime import UTC, datetime
from typing import Any

from .database import DatabaseManager
from .errors import DuplicateError

MODELS = {"planner": "claude-opus-4", "builder": "claude-sonnet-4", "reviewer": "gpt-4.1"}
PRICES = {  # USD per token (input, output)
    "claude-opus-4": (15e-6, 75e-6), "claude-sonnet-4": (3e-6, 15e-6), "gpt-4.1": (2e-6, 8e-6),
}
DEFINITIONS = {
    "planner": ("Turns an issue into a step-by-step plan", "planning", "plan,estimate"),
    "builder": ("Implements the plan and runs the tests", "coding", "code,test,git"),
    "reviewer": ("Reviews the change against the plan", "review", "review,security"),
}


PAUSE_UNITS = 16  # the sum of every pause in Run.main, so the run lasts about `duration`


class Run:
    """Writes one simulated session; ``pace`` scales every pause."""

    def __init__(self, db: DatabaseManager, session_id: str, pace: float, seed: int | None) -> None:
        self.db = db
        self.session_id = session_id
        self.pace = pace
        self.rng = random.Random(seed)
        self.running: set[str] = set()  # agents executing, cancelled if the demo is stopped

    async def pause(self, units: float) -> None:
        await asyncio.sleep(units * self.pace)

    async def definition(self, name: str) -> str:
        row = await self.db.get_orchestrator_agent_by_name(name)
        if row is not None:
            return str(row["id"])
        description, agent_type, capabilities = DEFINITIONS[name]
        try:
            return await self.db.create_orchestrator_agent(
                name, description, agent_type=agent_type, capabilities=capabilities,
                default_model=MODELS[name])
        except DuplicateError:  # another demo created it a moment ago
            row = await self.db.get_orchestrator_agent_by_name(name)
            assert row is not None
            return str(row["id"])

    async def agent(self, role: str, label: str) -> str:
        oa = await self.definition(role)
        agent = await self.db.create_agent(oa, self.session_id, name=label, model=MODELS[role],
                                           metadata={"role": role})
        await self.db.update_agent_status(agent, "executing")
        self.running.add(agent)
        await self.log(agent, f"{label} started", log_type="state_change",
                       details={"from": "pending", "to": "executing"})
        return agent

    async def log(self, agent: str, message: str, *, level: str = "INFO",
                  log_type: str = "event", details: Any = None) -> None:
        await self.db.create_agent_log(agent, message, log_level=level, log_type=log_type,
                                       details=details)

    async def prompt(self, agent: str, role: str, content: str, response: str, *,
                     units: float = 2.0, fail: bool = False) -> None:
        model = MODELS[role]
        prompt_id = await self.db.create_prompt(agent, content, model=model)
        await self.log(agent, f"prompt sent to {model}", level="DEBUG", log_type="llm_call",
                       details={"prompt_id": prompt_id, "chars": len(content)})
        await self.pause(units)
        tokens_in = self.rng.randint(800, 4000) + len(content) // 3
        tokens_out = 0 if fail else self.rng.randint(200, 1500)
        price_in, price_out = PRICES[model]
        cost = round(tokens_in * price_in + tokens_out * price_out, 6)
        await self.db.complete_prompt(
            prompt_id, None if fail else response, tokens_input=tokens_in,
            tokens_output=tokens_out, cost_usd=cost, status="failed" if fail else "completed")
        await self.log(agent, f"{model} answered: {tokens_in} in, {tokens_out} out, ${cost:.4f}",
                       level="WARNING" if fail else "DEBUG", log_type="llm_result",
                       details={"prompt_id": prompt_id, "cost_usd": cost})

    async def finish(self, agent: str, label: str, status: str) -> None:
        await self.db.update_agent_status(agent, status)
        self.running.discard(agent)
        level = "ERROR" if status == "failed" else "INFO"
        await self.log(agent, f"{label} {status}", level=level, log_type="state_change",
                       details={"from": "executing", "to": status})

    async def main(self) -> None:
        db = self.db
        await db.create_system_log(f"orchestrator started session {self.session_id}",
                                   source="orchestrator", details={"workflow": "plan-build-review"})

        planner = await self.agent("planner", "planner")
        await self.log(planner, "Read the issue and outline the change", log_type="step_start")
        await self.prompt(planner, "planner",
                          "Issue #42: the export command loses rows when the database is busy. "
                          "Write a plan.",
                          "1. Reproduce with two writers.\n2. Retry on SQLITE_BUSY with backoff."
                          "\n3. Add a regression test.\n4. Document the limit.", units=2.5)
        await self.log(planner, "Plan has 4 steps", log_type="step_end", details={"steps": 4})
        await self.finish(planner, "planner", "completed")
        await self.pause(1)

        builder = await self.agent("builder", "builder")
        await self.log(builder, "Implement retry on SQLITE_BUSY", log_type="step_start")
        await self.prompt(builder, "builder", "Implement step 2 of the plan in export.py.",
                          "def export(db):\n    for attempt in retry(5):\n        ...", units=2)
        await self.log(builder, "running pytest -q tests/test_export.py", log_type="tool_call")
        await self.pause(1.5)
        await self.log(builder, "test_export_two_writers is flaky (1 of 3 runs failed)",
                       level="WARNING")
        await self.prompt(builder, "builder", "The test is flaky. Why?", "", units=2, fail=True)
        await self.log(builder, "LLM call failed: upstream timeout after 60 s", level="ERROR",
                       details={"error": "TimeoutError", "retryable": True})
        await self.log(builder, "giving up on this attempt", level="ERROR", log_type="step_end")
        await self.finish(builder, "builder", "failed")
        await db.create_system_log("builder failed; scheduling a retry", log_level="WARNING",
                                   source="orchestrator")
        await self.pause(1)

        retry = await self.agent("builder", "builder (retry)")
        await self.log(retry, "Implement retry on SQLITE_BUSY (attempt 2)", log_type="step_start")
        await self.prompt(retry, "builder",
                          "Attempt 2: make test_export_two_writers deterministic.",
                          "Use BEGIN IMMEDIATE and a busy timeout; the test now waits on an "
                          "Event instead of sleeping.\n<script>alert('not html')</script>",
                          units=2.5)
        await self.log(retry, "pytest: 48 passed in 3.1 s", details={"passed": 48})
        await self.log(retry, "Change ready for review", log_type="step_end")
        await self.finish(retry, "builder (retry)", "completed")
        await self.pause(1)

        reviewer = await self.agent("reviewer", "reviewer")
        await self.log(reviewer, "Review the diff against the plan", log_type="step_start")
        await self.prompt(reviewer, "reviewer", "Review this diff against the 4-step plan.",
                          "Approve. Step 4 (documentation) is missing; add a note to the README.",
                          units=2.5)
        await self.log(reviewer, "1 non-blocking comment", level="WARNING",
                       details={"comments": 1, "blocking": 0})
        await self.log(reviewer, "Review done: approved", log_type="step_end")
        await self.finish(reviewer, "reviewer", "completed")
        await db.create_system_log(f"session {self.session_id} finished", source="orchestrator")


async def run_demo(db: DatabaseManager, *, duration: float = 25.0, session_id: str | None = None,
                   seed: int | None = None) -> str:
    """Write one simulated session over about ``duration`` seconds; return its id."""
    session_id = session_id or "demo-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run = Run(db, session_id, pace=max(duration, 0.0) / PAUSE_UNITS, seed=seed)
    try:
        await run.main()
    except asyncio.CancelledError:  # stopped (Ctrl-C, SIGTERM): no run left "executing"
        for agent in sorted(run.running):
            await run.finish(agent, "run", "cancelled")
        raise
    return session_id


def main(argv: list[str] | None = None) -> None:
    """``python -m orchestrator_db.demo [--duration 25] [--session ID] [--url URL]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="database URL (default: the usual resolution)")
    parser.add_argument("--duration", type=float, default=25.0, help="seconds the run takes")
    parser.add_argument("--session", default=None, help="session id (default: demo-<time>)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before starting")
    args = parser.parse_args(argv)

    async def go() -> None:
        # SIGTERM (how `orchestrator-db demo` stops it) ends the run as Ctrl-C does.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await asyncio.sleep(args.delay)
        async with DatabaseManager(url=args.url) as db:
            session = await run_demo(db, duration=args.duration, session_id=args.session)
        print(f"demo session {session} written", flush=True)

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):  # ends quietly
        asyncio.run(go())


if __name__ == "__main__":
    main()
