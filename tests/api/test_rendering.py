"""Response bodies are encoded once (orjson, pydantic-core for what orjson refuses) to the same JSON.

The reference is what the service answered before: pydantic-core's ``to_json`` of the library's
page. Compared as parsed JSON (same keys in the same order, same values and types) and checked for
the cases where encoders differ: floats, integers beyond 64 bits, non-ASCII text, datetimes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic_core import to_json

from orchestrator_db import DatabaseManager
from orchestrator_db.api.routes import render_json
from orchestrator_db.jsoncodec import JsonText

TRICKY: dict[str, Any] = {
    "floats": [0.1, 1e16, 1.5e300, 1e-7, 5e-324, 1.7976931348623157e308, -2.5, 0.0, 3.0],
    "ints": [0, -1, 2**53 + 1, 2**63 - 1, -(2**63)],
    "text": "héllo ✓ 日本 🎉 \"quoted\" \\ back\nline\ttab \u2028 \x7f",
    "nested": {"a": [None, True, False, {"b": []}], "é": {}},
}


def same(new: bytes, old: bytes) -> None:
    """Same JSON content: equal values, same key order, ints stay ints and floats floats."""
    def typed(value: Any) -> Any:
        if isinstance(value, dict):
            return [(k, typed(v)) for k, v in value.items()]
        if isinstance(value, list):
            return [typed(v) for v in value]
        return (type(value).__name__, value)
    assert typed(json.loads(new)) == typed(json.loads(old))


@pytest.mark.parametrize("value", [
    TRICKY,
    {"big": 2**70, "neg": -(2**64), "inside": [{"x": 10**30}]},  # orjson refuses: pydantic-core
    {"json_text": JsonText('{"a": 1}'), "plain": "x"},
    {"at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
     "east": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
     "whole": datetime(2026, 1, 2, tzinfo=UTC)},
    [],
    {"items": [], "next_cursor": None},
])
def test_render_json_matches_the_previous_encoder(value: Any) -> None:
    new, old = render_json(value), to_json(value)
    same(new, old)
    if "é" in json.dumps(value, ensure_ascii=False, default=str):
        assert "é".encode() in new  # UTF-8, as before, not \u escapes


async def _fill(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("planner ✓", description="débutant 日本")
    agent = await db.create_agent(oa, "sess-é/1", name="builder 🎉", metadata=TRICKY)
    for i in range(5):
        await db.create_agent_log(agent, f"line {i} ✓ «ü»", log_level="WARNING",
                                  details={**TRICKY, "i": i, "big": 2**70 if i == 3 else i})
        await db.create_prompt(agent, f"prompt {i} 日本", model="gpt-4o", status="completed",
                               tokens_input=10**12 - i, tokens_output=7, cost_usd=0.1 + i * 1e-9,
                               response="répondu")
    await db.create_system_log("système ✓", details={"x": 1.5e300})


LISTS = {
    "/api/agent-logs": "page_agent_logs",
    "/api/prompts": "page_prompts",
    "/api/agents": "page_agents",
    "/api/system-logs": "page_system_logs",
    "/api/orchestrator-agents": "page_orchestrator_agents",
}


@pytest.mark.parametrize("path", sorted(LISTS))
async def test_pages_answer_what_the_library_returns(app: FastAPI, client: httpx.AsyncClient,
                                                     path: str) -> None:
    db: DatabaseManager = app.state.db
    await _fill(db)
    for params in ({"limit": 3}, {"limit": 100, "order": "desc"}):
        response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        page = await getattr(db, LISTS[path])(**params)
        same(response.content, to_json({"items": page.items, "next_cursor": page.next_cursor}))
        # One record alone (through the route's response model) holds the same values.
        for item in json.loads(response.content)["items"][:2]:
            one = await client.get(f"{path}/{item['id']}")
            assert one.status_code == 200, one.text
            assert one.json() == item


async def test_big_integers_in_details_survive_the_page(app: FastAPI,
                                                        client: httpx.AsyncClient) -> None:
    await _fill(app.state.db)
    items = (await client.get("/api/agent-logs", params={"limit": 100})).json()["items"]
    assert [row["details"]["big"] for row in items] == [0, 1, 2, 2**70, 4]
    assert all(row["details"]["floats"] == TRICKY["floats"] for row in items)
    assert all(row["message"].endswith("✓ «ü»") for row in items)
    assert all(row["created_at"].endswith("+00:00") for row in items)
