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
from orchestrator_db.store import sqlite_bulk
from orchestrator_db.store.digest import RowDigest, jsonb_text, plain_array
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


async def test_plain_arrays_are_built_alike_by_python_sqlite_and_postgresql(pg_url: str
                                                                             ) -> None:
    # The digest's plain part: Python's encoder, SQLite's json_array (in C, for a SQLite side)
    # and PostgreSQL's array_to_json must escape every character the same way.
    chars = [chr(i) for i in range(1, 0x80)] + ["\u2028", "\u2029", "🚀", "é", "\ufeff", "計"]
    values = [f"a{c}b" for c in chars] + [None, "", "x'y", "\\N"]
    lite = sqlite3.connect(":memory:")
    conn = await asyncpg.connect(pg_url)
    try:
        for value in values:
            want = plain_array([value, "z"]).encode()
            assert lite.execute("SELECT CAST(json_array(CAST(? AS TEXT), 'z') AS BLOB)",
                                (value,)).fetchone()[0] == want, value
            assert (await conn.fetchval("SELECT array_to_json(ARRAY[$1::text, 'z'])::text",
                                        value)).encode() == want, value
    finally:
        await conn.close()
        lite.close()


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
    assert want["agent_logs"].rows == 120 and want["prompts"].rows == 3  # one from OTLP

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


ODD_LOGS = [  # (message, details, created_at, trace_id) as other tools may have written them
    ("a tab\there, a newline\nthere, a \\ and \x01", '{"b": "x, y: z", "a": [1, {"k": "v"}]}',
     "2026-01-02T00:00:00.000001+00:00", None),
    ("a time in another shape", '{"é": 1, "ab": "✓", "a": null}', "2026-01-02T00:00:01Z", "t1"),
    ("floats in the details", '{"f": 1.10, "g": 1e5, "big": 12345678901234567890123}',
     "2026-01-02 00:00:02.5+00:00", None),
    ("duplicate keys", '{"a": 1, "a": 2}', "2026-01-02T00:00:03.000000+00:00", None),
    ("no details", None, "2026-01-02T00:00:04.000000+00:00", "t2"),
    ("JSON as plain text", ' [1, "two", {}] ', "2026-01-02T00:00:05.000000+00:00", None),
    # The canonical length and offset, with a space for the "T" (and a lowercase "t"): not
    # canonical, though a check of length and offset alone took them for it.
    ("a space for the T", None, "2026-01-02 00:00:06.000000+00:00", None),
    ("a lowercase t", None, "2026-01-02t00:00:07.000000+00:00", None),
]


async def test_sqlite_digest_built_in_sql_equals_row_by_row_and_postgresql(
        source_url: str, pg_url: str) -> None:
    path = Path(source_url.removeprefix("sqlite:///"))
    async with DatabaseManager(url=source_url) as db:
        agent = (await db.list_agents())[0]["id"]
    lite = sqlite3.connect(path)
    with lite:
        for i, (message, details, created_at, trace_id) in enumerate(ODD_LOGS):
            lite.execute("INSERT INTO agent_logs (id, agent_id, log_level, log_type, message, "
                         "details, created_at, trace_id) VALUES (?, ?, 'INFO', 'event', ?, ?, "
                         "?, ?)", (f"01a30000-0000-7000-8000-00000000000{i}", agent, message,
                                   details, created_at, trace_id))
    tables = {t: COLUMNS[t] for t in COPY_TABLES}
    built = sqlite_bulk._digest_rows(lite, tables, 0, 1)
    by_row = {t: sqlite_bulk._hashed(lite, t, c, "") for t, c in tables.items()}
    lite.close()
    assert built == by_row
    assert built["agent_logs"].rows == 120 + len(ODD_LOGS)
    await copy_database(source_url, pg_url)  # verified: the digests agree
    assert (await _digests(pg_url)) == built
