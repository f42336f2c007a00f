"""A merge never counts a prompt twice: live on one side and pruned into a rollup on the other.

A rollup does not record which prompts it counts. Before, a merge compared rollup rows as
whole lines and added the source's prompts by id, so a prompt one side had pruned came back
live beside its rollup (costs doubled, "verified"), and a rollup that had grown since an
earlier copy was added next to the old one. Now a merge compares rollups by key and refuses,
before writing anything, what it cannot do without double counting.
"""

from __future__ import annotations

from typing import Any

import pytest
from copy_helpers import read_all, rollup_rows

from orchestrator_db import DatabaseManager
from orchestrator_db.models import utc_now
from orchestrator_db.transfer import MergeConflict, copy_database


async def _costs(url: str) -> list[dict[str, Any]]:
    async with DatabaseManager(url=url) as db:
        return [{k: r[k] for k in ("key", "prompts", "tokens_input", "cost_usd")}
                for r in await db.cost_summary("session")]


async def _prune_prompts(url: str) -> None:
    async with DatabaseManager(url=url) as db:
        assert (await db.prune(utc_now(), tables=("prompts",)))["prompts"] > 0


async def _new_prompt(url: str) -> str:
    """A prompt of the source's first agent, today, with a model a pruned one had."""
    async with DatabaseManager(url=url) as db:
        [agent] = [a for a in await db.list_agents() if a["name"] == "first"]
        prompt = await db.create_prompt(agent["id"], "new work", model="opus")
        await db.complete_prompt(prompt, "ok", tokens_input=10, tokens_output=5, cost_usd=1.0)
        return prompt


async def _refused_untouched(source_url: str, db_url: str) -> None:
    async with DatabaseManager(url=db_url) as dst:
        before = await read_all(dst), await rollup_rows(dst)
    with pytest.raises(MergeConflict, match="would count prompts twice") as caught:
        await copy_database(source_url, db_url, merge=True)
    assert caught.value.field == "merge" and "prune both databases" in caught.value.message
    async with DatabaseManager(url=db_url) as dst:
        assert (await read_all(dst), await rollup_rows(dst)) == before


async def test_prompts_the_destination_pruned_are_not_merged_back(source_url: str,
                                                                   db_url: str) -> None:
    await copy_database(source_url, db_url)
    await _prune_prompts(db_url)
    await _new_prompt(source_url)
    await _refused_untouched(source_url, db_url)


async def test_a_source_rollup_over_prompts_the_destination_holds_is_refused(
        source_url: str, db_url: str) -> None:
    await copy_database(source_url, db_url)
    await _prune_prompts(source_url)  # the destination still holds these prompts, live
    await _refused_untouched(source_url, db_url)


async def test_after_pruning_both_alike_a_merge_adds_only_the_new_prompt(
        source_url: str, db_url: str) -> None:
    await copy_database(source_url, db_url)
    await _prune_prompts(source_url)
    await _prune_prompts(db_url)  # same prompts, same totals: another updated_at
    prompt = await _new_prompt(source_url)
    result = await copy_database(source_url, db_url, merge=True)
    assert result.mode == "merge" and result.verified
    assert {t.table: t.copied_rows for t in result.tables}["prompts"] == 1
    assert {t.table: t.copied_rows for t in result.tables}["cost_rollups"] == 0
    async with DatabaseManager(url=db_url) as dst:
        assert (await dst.get_prompt(prompt))["cost_usd"] == 1.0
    assert await _costs(db_url) == await _costs(source_url)
    # And again: nothing to add, still verified, the same costs.
    again = await copy_database(source_url, db_url, merge=True)
    assert again.copied_rows == 0 and again.verified
    assert await _costs(db_url) == await _costs(source_url)
