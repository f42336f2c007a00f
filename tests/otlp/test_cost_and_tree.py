"""Automatic cost (genai-prices) in the library, and sub-agent trees from nested track_agent."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import httpx
import pytest

from orchestrator_db import DatabaseManager, SyncDatabaseManager
from orchestrator_db.api import create_app
from orchestrator_db.errors import ForeignKeyError, ValidationError
from orchestrator_db.pricing import price


@pytest.mark.parametrize(("model", "provider", "tokens"), [
    ("gpt-4o", "openai", (1000, 200, 100, 50)),
    ("gpt-4o-mini", None, (123_456, 789, 0, 0)),
    ("claude-sonnet-4-5", "anthropic", (50_000, 2_000, 30_000, 1_000)),
    ("claude-sonnet-4-5", "anthropic", (300_000, 2_000, 0, 0)),  # above its 200k tier
    ("gemini-2.5-pro", "gcp.gemini", (250_000, 100, 0, 0)),
    ("gpt-4o", "no.such.provider", (10, 10, 0, 0)),  # falls back to the model alone
])
def test_price_matches_genai_prices(model: str, provider: str | None,
                                    tokens: tuple[int, int, int, int]) -> None:
    tokens_input, tokens_output, cache_read, cache_write = tokens
    when = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=tokens_input, output_tokens=tokens_output,
                           cache_read_tokens=cache_read, cache_write_tokens=cache_write),
        model, genai_request_timestamp=when,
        provider_id={"gcp.gemini": "google", "no.such.provider": None}.get(
            provider or "", provider)).total_price
    got = price(model, tokens_input, tokens_output, provider=provider, cache_read=cache_read,
                cache_write=cache_write, when=when)
    assert got == pytest.approx(float(expected), rel=1e-9)
    assert isinstance(expected, Decimal)


def test_unknown_models_have_no_price() -> None:
    assert price("definitely-not-a-model-9000", 10, 10) is None
    assert price(None, 10, 10) is None
    assert price("gpt-4o", 0, 0) == 0.0


async def test_complete_prompt_prices_what_it_can(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("pricer")
    agent = await db.create_agent(oa, "s-cost")
    priced = await db.create_prompt(agent, "q", model="gpt-4o")
    assert await db.complete_prompt(priced, "a", tokens_input=1000, tokens_output=200)
    row = await db.get_prompt(priced)
    assert row is not None and row["cost_usd"] == pytest.approx(0.0045)

    explicit = await db.create_prompt(agent, "q", model="gpt-4o")
    await db.complete_prompt(explicit, "a", tokens_input=1000, tokens_output=200, cost_usd=0.5)
    assert (await db.get_prompt(explicit))["cost_usd"] == 0.5  # type: ignore[index]

    kept = await db.create_prompt(agent, "q", model="gpt-4o", cost_usd=0.25)
    await db.complete_prompt(kept, "a", tokens_input=1000, tokens_output=200)
    assert (await db.get_prompt(kept))["cost_usd"] == 0.25  # type: ignore[index]

    no_model = await db.create_prompt(agent, "q")
    await db.complete_prompt(no_model, "a", tokens_input=1000, tokens_output=200)
    assert (await db.get_prompt(no_model))["cost_usd"] == 0.0  # type: ignore[index]

    unknown = await db.create_prompt(agent, "q", model="house-model-unpriced-1")
    await db.complete_prompt(unknown, "a", tokens_input=1000, tokens_output=200)
    again = await db.create_prompt(agent, "q", model="house-model-unpriced-1")
    await db.complete_prompt(again, "a", tokens_input=5, tokens_output=5)
    assert (await db.get_prompt(unknown))["cost_usd"] == 0.0  # type: ignore[index]
    notes = await db.list_system_logs(source="orchestrator_db.pricing")
    assert [n["details"] for n in notes if "house-model-unpriced-1" in n["message"]] in (
        [{"model": "house-model-unpriced-1"}], [])  # said once per process (maybe earlier)

    assert not await db.complete_prompt("01a22fb4-891d-7a24-9aed-0b08715b594c", "a")
    with pytest.raises(ValidationError, match="tokens_input"):
        await db.complete_prompt(priced, "a", tokens_input=-1)


async def test_run_prompt_complete_prices_it(db: DatabaseManager) -> None:
    async with db.track_agent("writer", session_id="s-run", model="gpt-4o-mini") as run:
        handle = await run.prompt("draft")
        await handle.complete("done", tokens_input=10_000, tokens_output=1_000)
    row = await db.get_prompt(handle.id)
    assert row is not None and row["cost_usd"] == pytest.approx(10_000 * 0.15e-6 + 1_000 * 0.6e-6)


async def test_nested_track_agent_blocks_make_a_tree(db: DatabaseManager) -> None:
    async with db.track_agent("lead", session_id="s-tree") as lead:
        async with db.track_agent("researcher", session_id="s-tree") as researcher, \
                db.track_agent("reader", session_id="s-tree") as reader:
            pass
        async with db.track_agent("writer", session_id="s-tree") as writer:
            pass
    async with db.track_agent("solo", session_id="s-tree") as solo:
        pass
    assert lead.parent_agent_id is None and solo.parent_agent_id is None
    children = await db.list_agents(parent_agent_id=lead.agent_id)
    assert [a["id"] for a in children] == [researcher.agent_id, writer.agent_id]
    assert [a["id"] for a in await db.list_agents(parent_agent_id=researcher.agent_id)] == [
        reader.agent_id]
    row = await db.get_agent(reader.agent_id)
    assert row is not None and row["parent_agent_id"] == researcher.agent_id
    assert (await db.get_agent(solo.agent_id))["parent_agent_id"] is None  # type: ignore[index]


def test_nested_sync_track_agent(tmp_path: object) -> None:
    with SyncDatabaseManager(f"{tmp_path}/sync.db") as db, \
            db.track_agent("lead", session_id="s") as lead, \
            db.track_agent("helper", session_id="s") as helper:
        pass
    with SyncDatabaseManager(f"{tmp_path}/sync.db") as db:
        row = db.get_agent(helper.agent_id)
        assert row is not None and row["parent_agent_id"] == lead.agent_id


async def test_parent_agent_id_in_library_and_rest(db: DatabaseManager, db_url: str) -> None:
    oa = await db.create_orchestrator_agent("tree")
    parent = await db.create_agent(oa, "s")
    child = await db.create_agent(oa, "s", parent_agent_id=parent)
    with pytest.raises(ForeignKeyError, match="parent agent"):
        await db.create_agent(oa, "s", parent_agent_id="01a22fb4-891d-7a24-9aed-0b08715b594c")
    with pytest.raises(ValidationError, match="parent_agent_id"):
        await db.create_agent(oa, "s", parent_agent_id="nope")
    with pytest.raises(ValidationError, match="parent_agent_id"):
        await db.list_agents(parent_agent_id="nope")
    orphan = await db.create_agent(oa, "s")
    with pytest.raises(ForeignKeyError, match="parent agent"):
        await db.update_agent(orphan, parent_agent_id="01a22fb4-891d-7a24-9aed-0b08715b594c")
    assert await db.update_agent(orphan, parent_agent_id=parent)
    assert [a["id"] for a in await db.list_agents(parent_agent_id=parent)] == [child, orphan]
    assert await db.delete_agent(parent)
    assert (await db.get_agent(child))["parent_agent_id"] is None  # type: ignore[index]

    app = create_app(db_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            created = (await c.post("/api/agents", json={
                "orchestrator_agent_id": oa, "session_id": "s", "parent_agent_id": child})).json()
            assert created["parent_agent_id"] == child
            listed = (await c.get("/api/agents", params={"parent_agent_id": child})).json()
            assert [a["id"] for a in listed["items"]] == [created["id"]]
            response = await c.get("/api/agents", params={"parent_agent_id": "x"})
            assert response.status_code == 400
