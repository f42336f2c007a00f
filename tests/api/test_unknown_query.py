"""Unknown query parameters are a 400 naming the known ones, not silently ignored (issue 13, 7).

Before, ``GET /api/agent-logs?level=ERROR`` (the CLI's word) answered every level.
"""

from __future__ import annotations

import httpx
import pytest


async def test_agent_logs_with_level_instead_of_min_level(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/agent-logs", params={"level": "ERROR"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "ValidationError" and error["field"] == "level"
    assert error["message"].startswith("unknown query parameter 'level'; known: ")
    for name in ("agent_id", "cursor", "limit", "log_level", "min_level", "session_id"):
        assert name in error["message"]
    ok = await client.get("/api/agent-logs", params={"min_level": "ERROR"})
    assert ok.status_code == 200


@pytest.mark.parametrize("path", ["/api/orchestrator-agents", "/api/agents", "/api/prompts",
                                  "/api/system-logs", "/api/sessions", "/api/costs",
                                  "/api/stats"])
async def test_every_list_refuses_unknown_parameters(client: httpx.AsyncClient, path: str
                                                     ) -> None:
    response = await client.get(path, params={"colour": "red"})
    assert response.status_code == 400, response.text
    assert "unknown query parameter 'colour'" in response.json()["error"]["message"]


async def test_known_parameters_and_the_token_still_work(client: httpx.AsyncClient) -> None:
    for path, params in [("/api/sessions", {"limit": "5"}),
                         ("/api/costs", {"group_by": "day"}),
                         ("/api/agents", {"status": "failed", "order": "desc"}),
                         ("/api/system-logs", {"token": "x"})]:  # the browser form of the token
        response = await client.get(path, params=params)
        assert response.status_code == 200, (path, response.text)
    missing = await client.delete("/api/orchestrator-agents/0190a000-0000-7000-8000-000000000000",
                                  params={"cascade": "true"})
    assert missing.status_code == 404
