"""The seed's smoke test (seed 000, Task 8) on both engines."""

from orchestrator_db import DatabaseManager


async def test_seed_smoke(db_url: str) -> None:
    async with DatabaseManager(url=db_url) as db:
        agent_id = await db.create_orchestrator_agent("test-agent", "Test description")
        agent = await db.get_orchestrator_agent(agent_id)
        agents = await db.list_orchestrator_agents()
    assert agent is not None
    assert agent["id"] == agent_id
    assert agent["name"] == "test-agent"
    assert agent["description"] == "Test description"
    assert agent["status"] == "active"
    assert len(agents) == 1
