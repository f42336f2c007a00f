"""Stateful property test: one random operation sequence on SQLite and PostgreSQL, same results.

Ids are normalised to the order in which they first appear and timestamps to a placeholder, so
the comparison is about behaviour: values, ordering, errors (type and field), counts, sums.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from orchestrator_db import OrchestratorDBError, SyncDatabaseManager

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
MISSING = "0190f1c2-0000-7000-8000-000000000000"

names = st.sampled_from(["planner", "builder", "reviewer", "ünï", ""])
sessions = st.sampled_from(["s1", "s2", "s3"])
statuses = st.sampled_from(["pending", "executing", "completed", "failed", "cancelled", "bogus"])
levels = st.sampled_from(["DEBUG", "INFO", "warning", "ERROR", "CRITICAL", "LOUD"])
costs = st.sampled_from([0.0, 0.5, 0.125, 1e-6, 3.25, -1.0])
tokens = st.sampled_from([0, 1, 250, 10**12, -3])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False, width=32) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
texts = st.text(max_size=20)


class Normaliser:
    def __init__(self) -> None:
        self.labels: dict[str, str] = {}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if isinstance(value, str):
            if TS.match(value):
                return "<ts>"
            try:
                canonical = str(uuid.UUID(value))
            except ValueError:
                return value
            if canonical == value and value != MISSING:
                return self.labels.setdefault(value, f"<id{len(self.labels)}>")
        return value


def _pg(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(SameOnBothEngines.pg_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


class SameOnBothEngines(RuleBasedStateMachine):
    tmp: Path
    pg_url: str
    schema_url: Callable[[str], str]

    @initialize()
    def open(self) -> None:
        self.schema = f"h_{uuid.uuid4().hex[:16]}"
        _pg(f"CREATE SCHEMA {self.schema}")
        path = self.tmp / f"{self.schema}.db"
        self.dbs = [SyncDatabaseManager(path).connect(),
                    SyncDatabaseManager(url=self.schema_url(self.schema)).connect()]
        self.norms = [Normaliser(), Normaliser()]
        self.oas: list[list[str]] = [[], []]
        self.agents: list[list[str]] = [[], []]
        self.prompts: list[list[str]] = [[], []]

    def teardown(self) -> None:
        for db in getattr(self, "dbs", []):
            db.close()
        if hasattr(self, "schema"):
            _pg(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    def both(self, call: Any) -> list[Any]:
        """Run call(engine_index, db) on both engines and assert equal normalised outcomes."""
        outcomes = []
        for i, db in enumerate(self.dbs):
            try:
                outcomes.append(("ok", call(i, db)))
            except OrchestratorDBError as exc:
                outcomes.append(("error", type(exc).__name__, exc.field))
        normalised = [self.norms[i](o) for i, o in enumerate(outcomes)]
        assert normalised[0] == normalised[1], outcomes
        return outcomes

    @staticmethod
    def pick(ids: list[str], index: int) -> str:
        return ids[index % len(ids)] if ids and index >= 0 else MISSING

    def remember(self, outcomes: list[Any], where: list[list[str]]) -> None:
        if outcomes[0][0] == "ok":
            for i in range(2):
                where[i].append(outcomes[i][1])

    @rule(name=names, caps=st.none() | st.text(max_size=10), metadata=json_values)
    def create_orchestrator_agent(self, name: str, caps: str | None, metadata: Any) -> None:
        meta = metadata if isinstance(metadata, dict) else None
        self.remember(self.both(lambda i, db: db.create_orchestrator_agent(
            name, "d", capabilities=caps, metadata=meta)), self.oas)

    @rule(oa=st.integers(-1, 5), session=sessions, status=statuses, model=st.none() | texts)
    def create_agent(self, oa: int, session: str, status: str, model: str | None) -> None:
        self.remember(self.both(lambda i, db: db.create_agent(
            self.pick(self.oas[i], oa), session, status=status, model=model)), self.agents)

    @rule(agent=st.integers(-1, 9), status=statuses)
    def update_agent_status(self, agent: int, status: str) -> None:
        self.both(lambda i, db: db.update_agent_status(self.pick(self.agents[i], agent), status))

    @rule(agent=st.integers(-1, 9), field=st.sampled_from(["name", "model", "colour", "status"]),
          value=texts)
    def update_agent(self, agent: int, field: str, value: str) -> None:
        self.both(lambda i, db: db.update_agent(self.pick(self.agents[i], agent), **{field: value}))

    @rule(agent=st.integers(-1, 9), content=texts, model=st.sampled_from([None, "opus", "haiku"]))
    def create_prompt(self, agent: int, content: str, model: str | None) -> None:
        self.remember(self.both(lambda i, db: db.create_prompt(
            self.pick(self.agents[i], agent), content, model=model)), self.prompts)

    @rule(prompt=st.integers(-1, 9), tin=tokens, tout=tokens, cost=costs)
    def complete_prompt(self, prompt: int, tin: int, tout: int, cost: float) -> None:
        self.both(lambda i, db: db.complete_prompt(
            self.pick(self.prompts[i], prompt), "r", tokens_input=tin, tokens_output=tout,
            cost_usd=cost))

    @rule(agent=st.integers(-1, 9), level=levels, message=texts, details=json_values)
    def create_agent_log(self, agent: int, level: str, message: str, details: Any) -> None:
        self.both(lambda i, db: db.create_agent_log(
            self.pick(self.agents[i], agent), message, log_level=level, details=details))

    @rule(agent=st.integers(-1, 9), n=st.integers(1, 5), level=levels)
    def create_agent_logs(self, agent: int, n: int, level: str) -> None:
        self.both(lambda i, db: db.create_agent_logs(
            [{"agent_id": self.pick(self.agents[i], agent), "message": str(k),
              "log_level": level} for k in range(n)]))

    @rule(level=levels, source=st.none() | texts, details=json_values)
    def create_system_log(self, level: str, source: str | None, details: Any) -> None:
        self.both(lambda i, db: db.create_system_log("m", log_level=level, source=source,
                                                      details=details))

    @rule(agent=st.integers(-1, 9))
    def delete_agent(self, agent: int) -> None:
        self.both(lambda i, db: db.delete_agent(self.pick(self.agents[i], agent)))

    @rule(oa=st.integers(-1, 5), cascade=st.booleans())
    def delete_orchestrator_agent(self, oa: int, cascade: bool) -> None:
        self.both(lambda i, db: db.delete_orchestrator_agent(self.pick(self.oas[i], oa),
                                                             cascade=cascade))

    @rule(min_level=st.none() | levels, order=st.sampled_from(["asc", "desc"]),
          limit=st.integers(0, 6), session=st.none() | sessions)
    def list_agent_logs(self, min_level: str | None, order: str, limit: int,
                        session: str | None) -> None:
        self.both(lambda i, db: db.page_agent_logs(min_level=min_level, order=order, limit=limit,
                                                   session_id=session).items)

    @rule(session=sessions)
    def session_summary(self, session: str) -> None:
        self.both(lambda i, db: db.session_summary(session))

    @rule(group=st.sampled_from(["session", "agent", "orchestrator_agent", "model", "day"]))
    def cost_summary(self, group: str) -> None:
        self.both(lambda i, db: db.cost_summary(group))

    @invariant()
    def same_contents(self) -> None:
        if not hasattr(self, "dbs"):
            return
        self.both(lambda i, db: db.stats()["counts"])
        self.both(lambda i, db: db.list_agents(limit=1000))
        self.both(lambda i, db: db.list_orchestrator_agents(limit=1000))
        self.both(lambda i, db: db.list_prompts(limit=1000))
        self.both(lambda i, db: db.list_sessions())


def test_same_behaviour_on_sqlite_and_postgresql(tmp_path: Path, pg_server_url: str,
                                                  pg_schema_url: Callable[[str], str]) -> None:
    SameOnBothEngines.tmp = tmp_path
    SameOnBothEngines.pg_url = pg_server_url
    SameOnBothEngines.schema_url = staticmethod(pg_schema_url)  # type: ignore[assignment]
    run = SameOnBothEngines.TestCase
    run.settings = settings(max_examples=25, stateful_step_count=25, deadline=None,
                            suppress_health_check=list(HealthCheck))
    run().runTest()


pytestmark = pytest.mark.timeout(600)
