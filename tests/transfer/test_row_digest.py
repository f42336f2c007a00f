"""The row digest the copy verifies with: equal on both engines for equal rows, different for a
changed, missing or extra row, whichever store computes it (PostgreSQL in SQL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest
from copy_helpers import populate, with_bad_json_row

from orchestrator_db import DatabaseManager
from orchestrator_db.jsoncodec import JsonText, decode_json
from orchestrator_db.store.digest import RowDigest, jsonb_text
from orchestrator_db.store.sqlite_bulk import table_digests
from orchestrator_db.tables import COLUMNS
from orchestrator_db.transfer import COPY_TABLES, CopyError, copy_database

JSON_TEXTS = [
    '{"i": 0, "step": "build", "ok": false}',
    '{"z": [1, 2.5, null, true], "a": {"y": 1e20, "b": 1e-7}, "é": "計画", "ab": "x"}',
    '"plain"', "[]", "{}", "-0.0", "1.10", "1E5", "12345678901234567890123", "1.5e-10",
    '{"b":1,"a":2,"aa":3,"Ä":4,"z":"\\u0001\\n\\t\\"\\\\ \\u2028 / 🚀"}',
    '{"k": -3.0e17, "h": 0.5, "nested": [{"y": [], "x": {}}]}', " [1, 2] ",
]


async def test_jsonb_text_is_what_postgresql_prints(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        for text in JSON_TEXTS:
            printed = await conn.fetchval("SELECT $1::jsonb::text", text)
            assert jsonb_text(JsonText(text)) == printed, text
            if "1.10" not in text and "1E5" not in text and "e20" not in text:
                assert jsonb_text(decode_json(text)) == printed, text
    finally:
        await conn.close()


def test_invalid_json_text_is_refused() -> None:
    for text in ("{oops", "[1] 2", ""):
        with pytest.raises(ValueError):
            jsonb_text(JsonText(text))


def test_digest_ignores_order_and_json_spelling() -> None:
    columns = ("id", "details", "created_at")
    rows = [["a", JsonText('{"b": 1, "a": [1, "é"]}'), "2026-01-01T00:00:00Z"],
            ["b", None, "2026-01-01T00:00:00.000001+00:00"]]
    same = [["b", None, "2026-01-01T00:00:00.000001+00:00"],
            ["a", {"a": [1, "é"], "b": 1}, "2026-01-01T00:00:00.000000+00:00"]]
    one, two = RowDigest(), RowDigest()
    one.add(rows, columns)
    two.add(same, columns)
    assert one == two and one.rows == 2
    as_text = RowDigest()
    as_text.add([[r[0], str(r[1]) if r[1] is not None else None, r[2]] for r in rows], columns,
                json_text=True)
    assert as_text == one
    changed = RowDigest()
    changed.add([rows[0], ["b", {"x": 1}, rows[1][2]]], columns)
    assert changed != one and changed.rows == one.rows


async def _digests(url: str) -> dict[str, RowDigest]:
    async with DatabaseManager(url=url) as db:
        return await db.store.table_digests({t: COLUMNS[t] for t in COPY_TABLES})


@pytest.mark.parametrize("target", ["postgresql", "sqlite"])
async def test_both_stores_agree_and_see_a_changed_missing_or_extra_row(
        source_url: str, target: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    dst = (request.getfixturevalue("pg_url") if target == "postgresql"
           else f"sqlite:///{tmp_path}/dst.db")
    await copy_database(source_url, dst, verify=False)
    want = await _digests(source_url)
    assert await _digests(dst) == want
    assert want["agent_logs"].rows == 120 and want["prompts"].rows == 2

    async def run(sql: str) -> None:
        if target == "postgresql":
            conn = await asyncpg.connect(dst)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()
        else:
            lite = sqlite3.connect(tmp_path / "dst.db")
            with lite:
                lite.execute(sql)
            lite.close()

    oldest = "(SELECT id FROM agent_logs ORDER BY created_at, id LIMIT 1)"
    await run(f"UPDATE agent_logs SET message = message || '!' WHERE id = {oldest}")
    changed = await _digests(dst)
    assert changed["agent_logs"] != want["agent_logs"]
    assert changed["agent_logs"].rows == want["agent_logs"].rows
    assert {t: d for t, d in changed.items() if t != "agent_logs"} == {
        t: d for t, d in want.items() if t != "agent_logs"}

    await run("UPDATE prompts SET cost_usd = cost_usd + 1e-12")  # the last bits of a float
    assert (await _digests(dst))["prompts"] != want["prompts"]

    await run(f"DELETE FROM agent_logs WHERE id = {oldest}")
    assert (await _digests(dst))["agent_logs"].rows == want["agent_logs"].rows - 1

    async with DatabaseManager(url=dst) as db:
        await db.create_system_log("extra", details={"n": 1.5})
    assert (await _digests(dst))["system_logs"].rows == want["system_logs"].rows + 1


async def test_large_sqlite_tables_are_hashed_in_processes(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    url = f"sqlite:///{tmp_path}/big.db"
    async with DatabaseManager(url=url) as db:
        await populate(db, logs=300)
        in_thread = await db.store.table_digests({t: COLUMNS[t] for t in COPY_TABLES})
        monkeypatch.setattr("orchestrator_db.store.sqlite_bulk.PROCESS_ROWS", 0)
        in_processes = await table_digests(
            tmp_path / "big.db", {t: COLUMNS[t] for t in COPY_TABLES}, 5000,
            lambda fn: db.store.run(fn, write=False, heavy=True))
    assert in_processes == in_thread
    assert in_thread["agent_logs"].rows == 300


async def test_an_error_in_the_digest_process_reaches_the_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "hand-made.db"
    await with_bad_json_row(src, "01a20000-0000-7000-8000-000000000009", "[1,")
    monkeypatch.setattr("orchestrator_db.store.sqlite_bulk.PROCESS_ROWS", 0)
    with pytest.raises(CopyError, match="01a20000-0000-7000-8000-000000000009.*invalid JSON "
                       "in details"):
        await copy_database(src, f"sqlite:///{tmp_path}/dst.db")
