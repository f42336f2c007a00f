"""Every REST endpoint in-process, on both engines: values read back, filters, paging, errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from apihelpers import error_of

MISSING = "01900000-0000-7000-8000-000000000000"


async def make_oa(client: httpx.AsyncClient, name: str = "planner", **extra: Any) -> dict[str, Any]:
    r = await client.post("/api/orchestrator-agents", json={"name": name, **extra})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def make_agent(client: httpx.AsyncClient, oa_id: str, session: str = "s-1", **extra: Any
                     ) -> dict[str, Any]:
    r = await client.post("/api/agents",
                          json={"orchestrator_agent_id": oa_id, "session_id": session, **extra})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_orchestrator_agents_crud(client: httpx.AsyncClient) -> None:
    oa = await make_oa(client, "planner", description="Plans", agent_type="planning",
                       capabilities="plan, estimate", metadata={"tier": 1})
    assert oa["capabilities"] == ["plan", "estimate"]
    assert oa["status"] == "active" and oa["metadata"] == {"tier": 1}
    other = await make_oa(client, "reviewer", agent_type="review", status="inactive")

    r = await client.get(f"/api/orchestrator-agents/{oa['id']}")
    assert r.status_code == 200 and r.json() == oa

    r = await client.get("/api/orchestrator-agents")
    assert [row["id"] for row in r.json()["items"]] == [oa["id"], other["id"]]
    assert r.json()["next_cursor"] is None
    r = await client.get("/api/orchestrator-agents", params={"status": "inactive"})
    assert [row["id"] for row in r.json()["items"]] == [other["id"]]
    r = await client.get("/api/orchestrator-agents", params={"agent_type": "planning"})
    assert [row["id"] for row in r.json()["items"]] == [oa["id"]]
    r = await client.get("/api/orchestrator-agents", params={"name": "reviewer"})
    assert [row["id"] for row in r.json()["items"]] == [other["id"]]
    r = await client.get("/api/orchestrator-agents", params={"name": "nobody"})
    assert r.json() == {"items": [], "next_cursor": None}
    r = await client.get("/api/orchestrator-agents", params={"order": "desc"})
    assert [row["id"] for row in r.json()["items"]] == [other["id"], oa["id"]]

    r = await client.patch(f"/api/orchestrator-agents/{oa['id']}",
                           json={"description": "Plans work", "status": "archived"})
    assert r.status_code == 200
    assert r.json()["description"] == "Plans work" and r.json()["status"] == "archived"
    assert r.json()["updated_at"] >= oa["updated_at"]
    assert (await client.get(f"/api/orchestrator-agents/{oa['id']}")).json() == r.json()

    r = await client.delete(f"/api/orchestrator-agents/{oa['id']}")
    assert r.status_code == 204 and r.content == b""
    error_of(await client.get(f"/api/orchestrator-agents/{oa['id']}"), 404, "NotFoundError", "id")


async def test_agents_crud_and_filters(client: httpx.AsyncClient) -> None:
    oa = await make_oa(client, "builder")
    oa2 = await make_oa(client, "reviewer")
    a1 = await make_agent(client, oa["id"], "s-1", name="b1", model="m1", metadata={"k": "v"})
    a2 = await make_agent(client, oa2["id"], "s-1", status="executing")
    a3 = await make_agent(client, oa["id"], "s-2")
    assert a1["status"] == "pending" and a1["metadata"] == {"k": "v"} and a1["model"] == "m1"

    async def ids(**params: Any) -> list[str]:
        r = await client.get("/api/agents", params=params)
        assert r.status_code == 200, r.text
        return [row["id"] for row in r.json()["items"]]

    assert await ids() == [a1["id"], a2["id"], a3["id"]]
    assert await ids(session_id="s-1") == [a1["id"], a2["id"]]
    assert await ids(orchestrator_agent_id=oa["id"]) == [a1["id"], a3["id"]]
    assert await ids(status="executing") == [a2["id"]]
    assert await ids(since=a2["created_at"]) == [a2["id"], a3["id"]]
    assert await ids(until=a2["created_at"]) == [a1["id"]]
    assert (await client.get(f"/api/agents/{a1['id']}")).json() == a1

    # A status change fills the timestamps, like update_agent_status.
    r = await client.patch(f"/api/agents/{a1['id']}", json={"status": "executing"})
    assert r.status_code == 200 and r.json()["started_at"] is not None
    r = await client.patch(f"/api/agents/{a1['id']}", json={"status": "completed", "name": "b1x"})
    body = r.json()
    assert body["status"] == "completed" and body["name"] == "b1x"
    assert body["completed_at"] is not None and body["completed_at"] >= body["started_at"]
    for field in ("status", "session_id"):  # NOT NULL columns: null is refused alike
        error = error_of(await client.patch(f"/api/agents/{a1['id']}", json={field: None}),
                         400, "ValidationError", field)
        assert error["message"] == f"{field} cannot be set to None"

    assert (await client.delete(f"/api/agents/{a3['id']}")).status_code == 204
    error_of(await client.get(f"/api/agents/{a3['id']}"), 404, "NotFoundError", "id")
    error_of(await client.delete(f"/api/agents/{a3['id']}"), 404, "NotFoundError", "id")
    error_of(await client.patch(f"/api/agents/{a3['id']}", json={"name": "x"}), 404,
             "NotFoundError", "id")


async def test_prompts_crud_and_filters(client: httpx.AsyncClient) -> None:
    oa = await make_oa(client)
    a1 = await make_agent(client, oa["id"], "s-1")
    a2 = await make_agent(client, oa["id"], "s-2")
    r = await client.post("/api/prompts", json={"agent_id": a1["id"], "content": "plan it",
                                                 "model": "opus"})
    assert r.status_code == 201
    p1 = r.json()
    assert p1["status"] == "pending" and p1["tokens_input"] == 0 and p1["cost_usd"] == 0
    r = await client.post("/api/prompts", json={
        "agent_id": a2["id"], "content": "build it", "model": "sonnet", "status": "completed",
        "response": "done", "tokens_input": 100, "tokens_output": 50, "cost_usd": 0.25})
    p2 = r.json()

    r = await client.patch(f"/api/prompts/{p1['id']}", json={
        "response": "1. do", "tokens_input": 10, "tokens_output": 5, "cost_usd": 0.5,
        "status": "completed", "completed_at": "2030-01-01T00:00:00Z"})
    assert r.status_code == 200
    done = r.json()
    assert done["response"] == "1. do" and done["tokens_output"] == 5 and done["cost_usd"] == 0.5
    assert done["completed_at"] == "2030-01-01T00:00:00.000000+00:00"

    async def ids(**params: Any) -> list[str]:
        r = await client.get("/api/prompts", params=params)
        assert r.status_code == 200, r.text
        return [row["id"] for row in r.json()["items"]]

    assert await ids() == [p1["id"], p2["id"]]
    assert await ids(agent_id=a2["id"]) == [p2["id"]]
    assert await ids(session_id="s-1") == [p1["id"]]
    assert await ids(model="sonnet") == [p2["id"]]
    assert await ids(status="completed", order="desc") == [p2["id"], p1["id"]]
    assert (await client.get(f"/api/prompts/{p2['id']}")).json() == p2

    assert (await client.delete(f"/api/prompts/{p2['id']}")).status_code == 204
    assert await ids() == [p1["id"]]
    error_of(await client.get(f"/api/prompts/{p2['id']}"), 404, "NotFoundError", "id")


async def test_agent_logs(client: httpx.AsyncClient) -> None:
    oa = await make_oa(client)
    a1 = await make_agent(client, oa["id"], "s-1")
    a2 = await make_agent(client, oa["id"], "s-2")
    rows = []
    for agent, level, log_type in [(a1, "debug", "event"), (a1, "WARNING", "step_start"),
                                   (a2, "ERROR", "event"), (a2, "INFO", "step_end")]:
        r = await client.post("/api/agent-logs", json={
            "agent_id": agent["id"], "message": f"{level} line", "log_level": level,
            "log_type": log_type, "details": {"n": len(rows)}})
        assert r.status_code == 201, r.text
        rows.append(r.json())
    assert rows[0]["log_level"] == "DEBUG" and rows[0]["details"] == {"n": 0}
    ids = [row["id"] for row in rows]

    async def listed(**params: Any) -> list[str]:
        r = await client.get("/api/agent-logs", params=params)
        assert r.status_code == 200, r.text
        return [row["id"] for row in r.json()["items"]]

    assert await listed() == ids
    assert await listed(agent_id=a1["id"]) == ids[:2]
    assert await listed(session_id="s-2") == ids[2:]
    assert await listed(log_level="ERROR") == [ids[2]]
    assert await listed(min_level="WARNING") == [ids[1], ids[2]]
    assert await listed(log_type="step_end") == [ids[3]]
    assert await listed(since=rows[1]["created_at"], until=rows[3]["created_at"]) == ids[1:3]
    assert await listed(order="desc", limit=2) == [ids[3], ids[2]]
    assert (await client.get(f"/api/agent-logs/{ids[0]}")).json() == rows[0]

    assert (await client.delete(f"/api/agent-logs/{ids[0]}")).status_code == 204
    assert await listed() == ids[1:]
    error_of(await client.delete(f"/api/agent-logs/{ids[0]}"), 404, "NotFoundError", "id")
    # A log line can be edited, e.g. to redact a secret that leaked into it.
    r = await client.patch(f"/api/agent-logs/{ids[1]}",
                           json={"message": "token=[redacted]", "details": None})
    assert r.status_code == 200, r.text
    assert r.json() == {**rows[1], "message": "token=[redacted]", "details": None}
    assert (await client.get(f"/api/agent-logs/{ids[1]}")).json()["message"] == "token=[redacted]"
    error_of(await client.patch(f"/api/agent-logs/{ids[1]}", json={"agent_id": a2["id"]}), 422,
             "ValidationError", "agent_id")
    error_of(await client.patch(f"/api/agent-logs/{ids[1]}", json={"message": None}), 400,
             "ValidationError", "message")
    error_of(await client.patch(f"/api/agent-logs/{ids[0]}", json={"message": "x"}), 404,
             "NotFoundError", "id")


async def test_system_logs(client: httpx.AsyncClient) -> None:
    made = []
    for level, source in [("INFO", "scheduler"), ("ERROR", "scheduler"), ("DEBUG", "api")]:
        r = await client.post("/api/system-logs", json={"message": f"{source} {level}",
                                                        "log_level": level, "source": source})
        assert r.status_code == 201, r.text
        made.append(r.json())
    ids = [row["id"] for row in made]
    r = await client.patch(f"/api/system-logs/{ids[2]}", json={"message": "edited",
                                                              "log_level": "debug"})
    assert r.status_code == 200, r.text
    assert r.json() == {**made[2], "message": "edited"}
    made[2] = r.json()
    r = await client.get("/api/system-logs", params={"source": "scheduler"})
    assert [row["id"] for row in r.json()["items"]] == ids[:2]
    r = await client.get("/api/system-logs", params={"min_level": "info"})
    assert r.status_code == 200
    assert [row["id"] for row in r.json()["items"]] == ids[:2]
    r = await client.get("/api/system-logs", params={"log_level": "DEBUG"})
    assert [row["id"] for row in r.json()["items"]] == [ids[2]]
    assert (await client.get(f"/api/system-logs/{ids[1]}")).json() == made[1]
    assert (await client.delete(f"/api/system-logs/{ids[1]}")).status_code == 204
    error_of(await client.get(f"/api/system-logs/{ids[1]}"), 404, "NotFoundError", "id")


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_cursor_walk(client: httpx.AsyncClient, order: str) -> None:
    made = []
    for i in range(25):
        r = await client.post("/api/system-logs", json={"message": f"line {i}"})
        made.append(r.json()["id"])
    expected = made if order == "asc" else made[::-1]
    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 10, "order": order}
        if cursor is not None:
            params["cursor"] = cursor
        r = await client.get("/api/system-logs", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        seen += [row["id"] for row in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == expected
    # A cursor made for one order is refused by the other.
    first = (await client.get("/api/system-logs", params={"limit": 10, "order": order})).json()
    other = "desc" if order == "asc" else "asc"
    r = await client.get("/api/system-logs", params={"cursor": first["next_cursor"],
                                                     "order": other})
    error_of(r, 400, "ValidationError", "cursor")


async def test_cascade_delete(client: httpx.AsyncClient) -> None:
    oa = await make_oa(client)
    agent = await make_agent(client, oa["id"])
    log = (await client.post("/api/agent-logs",
                             json={"agent_id": agent["id"], "message": "hi"})).json()
    err = error_of(await client.delete(f"/api/orchestrator-agents/{oa['id']}"), 409,
                   "ReferencedError", "orchestrator_agent_id")
    assert "cascade" in err["message"]
    assert (await client.get(f"/api/agents/{agent['id']}")).status_code == 200
    r = await client.delete(f"/api/orchestrator-agents/{oa['id']}", params={"cascade": "true"})
    assert r.status_code == 204
    assert (await client.get(f"/api/agents/{agent['id']}")).status_code == 404
    assert (await client.get(f"/api/agent-logs/{log['id']}")).status_code == 404


async def test_sessions_costs_stats_health(client: httpx.AsyncClient) -> None:
    oa = await make_oa(client, "planner")
    a1 = await make_agent(client, oa["id"], "s-1", status="completed")
    a2 = await make_agent(client, oa["id"], "s-2", status="executing", model="opus")
    for agent, cost in [(a1, 0.5), (a1, 0.25), (a2, 1.0)]:
        r = await client.post("/api/prompts", json={
            "agent_id": agent["id"], "content": "c", "model": "opus", "tokens_input": 10,
            "tokens_output": 4, "cost_usd": cost})
        assert r.status_code == 201

    r = await client.get("/api/sessions")
    assert r.status_code == 200
    body = r.json()
    assert [s["session_id"] for s in body["items"]] == ["s-2", "s-1"]
    assert body["next_cursor"] is None
    r = await client.get("/api/sessions", params={"limit": 1})
    first = r.json()
    assert [s["session_id"] for s in first["items"]] == ["s-2"]
    r = await client.get("/api/sessions", params={"limit": 1, "cursor": first["next_cursor"]})
    assert [s["session_id"] for s in r.json()["items"]] == ["s-1"]

    r = await client.get("/api/sessions/s-1/summary")
    summary = r.json()
    assert summary["status"] == "completed" and summary["agents"] == 1
    assert summary["prompts"] == 2 and summary["tokens_input"] == 20
    assert summary["cost_usd"] == pytest.approx(0.75)
    error_of(await client.get("/api/sessions/nope/summary"), 404, "NotFoundError", "session_id")

    r = await client.get("/api/costs", params={"group_by": "session"})
    assert r.status_code == 200
    costs = {row["key"]: row["cost_usd"] for row in r.json()["items"]}
    assert costs == {"s-1": pytest.approx(0.75), "s-2": pytest.approx(1.0)}
    r = await client.get("/api/costs", params={"group_by": "day"})
    assert len(r.json()["items"]) == 1 and r.json()["items"][0]["prompts"] == 3
    r = await client.get("/api/costs", params={"group_by": "orchestrator_agent"})
    assert r.json()["items"][0]["name"] == "planner"
    r = await client.get("/api/costs", params={"group_by": "day", "since": "2999-01-01"})
    assert r.json() == {"group_by": "day", "items": []}
    error_of(await client.get("/api/costs", params={"group_by": "planet"}), 400,
             "ValidationError", "group_by")

    stats = (await client.get("/api/stats")).json()
    assert stats["counts"]["prompts"] == 3 and stats["counts"]["agents"] == 2
    assert stats["engine"] in ("sqlite", "postgresql") and stats["schema_version"] >= 1
    health = (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["engine"] == stats["engine"]
    position = (await client.get("/api/events/position")).json()["position"]
    assert isinstance(position, int) and position >= 0


async def test_errors(client: httpx.AsyncClient) -> None:
    oa = await make_oa(client, "planner")
    # bad UUIDs, in a path and in a body
    error_of(await client.get("/api/agents/not-a-uuid"), 400, "ValidationError", "agent_id")
    error_of(await client.post("/api/agents", json={"orchestrator_agent_id": "nope",
                                                     "session_id": "s"}),
             400, "ValidationError", "orchestrator_agent_id")
    error_of(await client.get("/api/prompts", params={"agent_id": "x"}), 400, "ValidationError",
             "agent_id")
    # unknown status: as a filter and as a field
    err = error_of(await client.get("/api/agents", params={"status": "sleeping"}), 400,
                   "ValidationError", "status")
    assert "executing" in err["message"]
    error_of(await client.patch(f"/api/orchestrator-agents/{oa['id']}",
                                json={"status": "sleeping"}), 422, "ValidationError", "status")
    # unknown field: the body schema forbids extras
    err = error_of(await client.post("/api/orchestrator-agents", json={"name": "x", "colour": 1}),
                   422, "ValidationError", "colour")
    assert "colour" in err["message"]
    error_of(await client.patch(f"/api/orchestrator-agents/{oa['id']}", json={}), 400,
             "ValidationError")
    # malformed cursor, bad limit, bad timestamp
    error_of(await client.get("/api/agent-logs", params={"cursor": "!!!"}), 400,
             "ValidationError", "cursor")
    error_of(await client.get("/api/agent-logs", params={"limit": 0}), 400, "ValidationError",
             "limit")
    error_of(await client.get("/api/agent-logs", params={"since": "yesterday"}), 400,
             "ValidationError", "since")
    # negative tokens, wrong types, invalid JSON
    agent = await make_agent(client, oa["id"])
    error_of(await client.post("/api/prompts", json={"agent_id": agent["id"], "content": "c",
                                                      "tokens_input": -1}),
             422, "ValidationError", "tokens_input")
    error_of(await client.post("/api/prompts", content=b"{nope",
                               headers={"content-type": "application/json"}),
             422, "ValidationError")
    # duplicate name, missing parent, still referenced
    err = error_of(await client.post("/api/orchestrator-agents", json={"name": "planner"}),
                   409, "DuplicateError", "name")
    assert "planner" in err["message"]
    error_of(await client.post("/api/agents", json={"orchestrator_agent_id": MISSING,
                                                     "session_id": "s"}),
             409, "ForeignKeyError", "orchestrator_agent_id")
    error_of(await client.post("/api/agent-logs", json={"agent_id": MISSING, "message": "m"}),
             409, "ForeignKeyError", "agent_id")
    error_of(await client.post("/api/prompts", json={"agent_id": MISSING, "content": "m"}),
             409, "ForeignKeyError", "agent_id")
    # missing ids
    for path in ["orchestrator-agents", "agents", "prompts", "agent-logs", "system-logs"]:
        error_of(await client.get(f"/api/{path}/{MISSING}"), 404, "NotFoundError", "id")
        error_of(await client.delete(f"/api/{path}/{MISSING}"), 404, "NotFoundError", "id")
    error_of(await client.patch(f"/api/prompts/{MISSING}", json={"model": "m"}), 404,
             "NotFoundError", "id")
    # unknown route and method
    error_of(await client.get("/api/nothing-here"), 404, "NotFoundError")
    error_of(await client.put(f"/api/agents/{agent['id']}", json={}), 405, "MethodNotAllowed")


async def test_body_limit(db_url: str) -> None:
    from orchestrator_db.api import create_app

    # max_body_bytes limits the bodies of routes that take no record; a record route admits at
    # least its largest record (test_body_limits.py).
    app = create_app(db_url, max_body_bytes=2_000)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        r = await client.post("/api/system-logs", json={"message": "x" * 3_000})
        assert r.status_code == 201
        r = await client.post("/api/stats", content=b"x" * 1_500)
        error_of(r, 405, "MethodNotAllowed")  # within the limit: routed
        error_of(await client.post("/api/stats", content=b"x" * 3_000), 413, "PayloadTooLarge")

        # No Content-Length (chunked): counted while reading, refused past the limit.
        async def chunks() -> Any:
            yield b'{"message": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        r = await client.post("/api/stats", content=chunks(),
                              headers={"content-type": "application/json"})
        error_of(r, 413, "PayloadTooLarge")
        assert (await client.get("/api/stats")).json()["counts"]["system_logs"] == 1


async def test_openapi_describes_everything(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for resource in ["orchestrator-agents", "agents", "prompts", "agent-logs", "system-logs"]:
        assert {"get", "post"} <= set(paths[f"/api/{resource}"])
        item = next(p for p in paths if p.startswith(f"/api/{resource}/{{"))
        assert {"get", "delete"} <= set(paths[item])
    for path in ["/api/sessions", "/api/sessions/{session_id}/summary", "/api/costs",
                 "/api/stats", "/healthz"]:
        assert "get" in paths[path]
    schemas = spec["components"]["schemas"]
    assert {"OrchestratorAgentCreate", "AgentUpdate", "PromptCreate", "AgentLogPage",
            "ErrorResponse", "SessionSummary", "CostSummary"} <= set(schemas)
    assert (await client.get("/docs")).status_code == 200


async def test_dashboard_files_are_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    for name in ["app.js", "api.js", "dom.js", "chart.js", "overview.js", "session.js",
                 "style.css"]:
        r = await client.get(f"/static/{name}")
        assert r.status_code == 200, name
        assert b"innerHTML" not in r.content, name
