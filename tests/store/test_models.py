"""The Pydantic record models describe exactly what the manager returns, on both engines."""

from __future__ import annotations

from orchestrator_db import DatabaseManager
from orchestrator_db.models import Agent, AgentLog, OrchestratorAgent, Prompt, SystemLog


async def test_records_match_models(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("o", capabilities=["a"], metadata={"k": [1]})
    agent = await db.create_agent(oa, "s", model="m", metadata={"x": None})
    prompt = await db.create_prompt(agent, "c")
    await db.complete_prompt(prompt, "r", tokens_input=1, tokens_output=2, cost_usd=0.5)
    log = await db.create_agent_log(agent, "m", details=[1, "two", {"3": 4.5}])
    syslog = await db.create_system_log("s", source="x", details=None)
    pairs = [
        (OrchestratorAgent, await db.get_orchestrator_agent(oa)),
        (Agent, await db.get_agent(agent)),
        (Prompt, await db.get_prompt(prompt)),
        (AgentLog, await db.get_agent_log(log)),
        (SystemLog, await db.get_system_log(syslog)),
    ]
    for model, row in pairs:
        assert row is not None
        assert list(row) == list(model.model_fields), model.__name__
        assert model.model_validate(row).model_dump() == row
