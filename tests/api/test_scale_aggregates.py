"""The aggregate endpoints' paging and labels (issue 12 item 5), in-process on both engines."""

from __future__ import annotations

import httpx
from apihelpers import error_of
from test_rest import make_agent, make_oa


async def _pages(client: httpx.AsyncClient, path: str, **params: object) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        r = await client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([row.get("session_id", row.get("key")) for row in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_sessions_keyset_cursor_survives_activity(client: httpx.AsyncClient) -> None:
    oa = await make_oa(client)
    agents = {f"s{i}": await make_agent(client, oa["id"], f"s{i}") for i in range(7)}
    first = (await client.get("/api/sessions", params={"limit": 3})).json()
    assert [s["session_id"] for s in first["items"]] == ["s6", "s5", "s4"]
    # The oldest session gets busy and a new one starts: neither moves the pages after the first.
    r = await client.post("/api/prompts", json={"agent_id": agents["s0"]["id"], "content": "c",
                                                "cost_usd": 0.5})
    assert r.status_code == 201
    await make_agent(client, oa["id"], "s-new")
    rest = await _pages(client, "/api/sessions", limit=3)
    assert rest[0] == ["s-new", "s6", "s5"]
    r = await client.get("/api/sessions", params={"limit": 3, "cursor": first["next_cursor"]})
    assert [s["session_id"] for s in r.json()["items"]] == ["s3", "s2", "s1"]


async def test_sessions_cursor_malformed_is_400(client: httpx.AsyncClient) -> None:
    for bad in ("czox", "eyJ4IjoxfQ", "WyJzIiwibm90IGEgdGltZSIsInMiXQ"):
        r = await client.get("/api/sessions", params={"cursor": bad})
        error_of(r, 400, "ValidationError", "cursor")


async def test_costs_by_session_are_paged(client: httpx.AsyncClient) -> None:
    oa = await make_oa(client)
    for i in range(5):
        agent = await make_agent(client, oa["id"], f"s{i}")
        r = await client.post("/api/prompts", json={"agent_id": agent["id"], "content": "c",
                                                    "cost_usd": 0.25 * i})
        assert r.status_code == 201
    assert await _pages(client, "/api/costs", group_by="session", limit=2) == [
        ["s0", "s1"], ["s2", "s3"], ["s4"]]
    body = (await client.get("/api/costs", params={"group_by": "session"})).json()
    assert [row["key"] for row in body["items"]] == ["s0", "s1", "s2", "s3", "s4"]
    assert body["next_cursor"] is None
    body = (await client.get("/api/costs", params={"group_by": "day"})).json()
    assert "next_cursor" not in body and body["items"][0]["prompts"] == 5
    cursor = (await client.get("/api/costs", params={"group_by": "session", "limit": 2})).json()[
        "next_cursor"]
    error_of(await client.get("/api/costs", params={"group_by": "day", "cursor": cursor}), 400,
             "ValidationError", "cursor")


async def test_stats_label_exact_counts(client: httpx.AsyncClient) -> None:
    oa = await make_oa(client)
    await make_agent(client, oa["id"])
    body = (await client.get("/api/stats")).json()
    assert body["counts"]["agents"] == 1
    assert body["estimated"] == dict.fromkeys(body["counts"], False)
