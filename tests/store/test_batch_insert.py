"""Batches of rows keep every value exactly, in order, on both engines.

On SQLite a batch goes in as one JSON array taken apart by ``json_each`` (``sqlite_batch.py``)
when JSON carries its values exactly, and by ``executemany`` otherwise; PostgreSQL COPYs it.
Whatever the path, the rows read back are the rows written, the same on both engines.
"""

from __future__ import annotations

import contextlib
import sqlite3
import warnings
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator_db import DatabaseManager
from orchestrator_db.store.sqlite_batch import delete_ids, insert_rows

# Text JSON could be mistaken for, or must escape: every control character but NUL (which no
# engine stores), quotes, backslashes, escapes spelled out, characters outside the BMP.
AWKWARD_TEXTS = [
    "".join(chr(c) for c in range(1, 32)),
    'quote " backslash \\ slash / \\u0041 spelled out \\n',
    "😀 🧑‍💻 é ﬃ \u2028\u2029 \ufeff \U0010fffd",
    "123", "-0", "1e308", "null", "true", "[1, 2]", '{"a": 1}', "", " ",
]


@pytest.mark.parametrize("rows", [2, 150], ids=["small-batch", "recorded-batch"])
async def test_awkward_text_round_trips_in_order(db: DatabaseManager, rows: int) -> None:
    oa = await db.create_orchestrator_agent("batch")
    agent = await db.create_agent(oa, "s")
    texts = [AWKWARD_TEXTS[i % len(AWKWARD_TEXTS)] + f" #{i}" * (i % 2) for i in range(rows)]
    details = [{"text": t, "n": 2**62 + i, "nested": [t, None, True]} for i, t in enumerate(texts)]
    ids = await db.create_agent_logs([
        {"agent_id": agent, "message": t or "-", "log_type": t[:50] or "event", "details": d}
        for t, d in zip(texts, details, strict=True)])
    stored = await db.list_agent_logs(agent, limit=rows, order="asc")
    assert [r["id"] for r in stored] == ids
    assert [r["message"] for r in stored] == [t or "-" for t in texts]
    assert [r["log_type"] for r in stored] == [t[:50] or "event" for t in texts]
    assert [r["details"] for r in stored] == details
    # The change log holds one insert per row, in the batch's order.
    changes = await db.store.fetch(
        "SELECT row_id FROM changes WHERE table_name = 'agent_logs' ORDER BY position")
    assert [str(c["row_id"]) for c in changes] == ids


async def test_a_sliced_batch_keeps_each_rows_values(db: DatabaseManager) -> None:
    # Past 2,048 rows PostgreSQL encodes each slice ahead of its COPY, each repeated value of a
    # column (agent, level, type, time) once a slice: rows that share some values and differ in
    # others keep their own, in order, on both engines.
    oa = await db.create_orchestrator_agent("slices")
    agents = [await db.create_agent(oa, f"s{i}") for i in range(3)]
    levels = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    times = ["0001-01-01T00:00:00.000001+00:00", "9999-12-31T23:59:59.999998+00:00",
             "2026-06-30T12:00:00.000001+00:00"]
    n = 2 * 2048 + 7
    rows: list[dict[str, Any]] = [{
        "agent_id": agents[i % 3], "message": f"m{i}", "log_level": levels[i % 5],
        "log_type": ["event", "tool", "step_end", "x" * 7][i % 4],
        "details": None if i % 6 == 0 else {"i": i, "agent": i % 3},
        **({"created_at": times[i % 3]} if i % 4 == 1 else {}),
        **({"trace_id": f"{i:032x}", "span_id": f"{i:016x}"} if i % 10 == 3 else {}),
    } for i in range(n)]
    ids = await db.create_agent_logs(rows)
    stored = {r["id"]: r async for r in db.iter_agent_logs()}
    assert len(stored) == n
    default = {stored[ids[i]]["created_at"] for i in range(n) if "created_at" not in rows[i]}
    assert len(default) == 1  # the rows given no time share the batch's
    fields = ("agent_id", "message", "log_level", "log_type", "details", "trace_id", "span_id")
    for row_id, row in zip(ids, rows, strict=True):
        got = stored[row_id]
        assert {f: got[f] for f in fields} == {f: row.get(f) for f in fields}
        assert got["created_at"] == row.get("created_at", *default)


# SQLite's own path (sqlite_batch.py) against plain executemany, on the same rows: the batches
# JSON cannot carry exactly go by executemany, so every value is stored (or refused) alike.
BATCHES = [
    pytest.param([["a", "text"], ["b", None], ["c", 7], ["d", True]], id="json"),
    pytest.param([["a", b"bytes"], ["b", b"more"]], id="bytes"),
    pytest.param([["a", "x\x00y"], ["b", "z"]], id="nul"),
    pytest.param([["a", "lone \udc80"], ["b", "z"]], id="lone-surrogate"),
    pytest.param([["a", 2**60], ["b", -(2**63)]], id="integers-past-53-bits"),
    pytest.param([["a", 2**63], ["b", 1]], id="integer-past-64-bits"),
    pytest.param([["a", 0.1 + 0.2], ["b", 1e308]], id="floats"),
    pytest.param([["a", datetime(2026, 1, 1, tzinfo=UTC)], ["b", "z"]], id="datetime"),
    pytest.param([["a", "first"], ["a", "again"], ["b", "z"]], id="duplicate-id"),
]


def _stored(rows: list[list[Any]], insert: Any, skip_existing: bool) -> object:
    """What a new table holds after ``insert``, as (id, value, SQLite type) rows, or the
    error's type."""
    with contextlib.closing(sqlite3.connect(":memory:", isolation_level=None)) as conn:
        conn.execute("CREATE TABLE system_logs (id TEXT PRIMARY KEY, message)")
        try:
            insert(conn, rows, skip_existing)
        except Exception as exc:  # noqa: BLE001 - compared between the two paths
            return type(exc)
        return conn.execute("SELECT id, message, typeof(message) FROM system_logs "
                            "ORDER BY rowid").fetchall()


@pytest.mark.parametrize("skip_existing", [False, True], ids=["insert", "merge"])
@pytest.mark.parametrize("rows", BATCHES)
def test_sqlite_batch_stores_what_executemany_stores(rows: list[list[Any]],
                                                     skip_existing: bool) -> None:
    def batch(conn: sqlite3.Connection, rows: list[list[Any]], skip: bool) -> None:
        insert_rows(conn, "system_logs", ["id", "message"], rows, skip_existing=skip)

    def plain(conn: sqlite3.Connection, rows: list[list[Any]], skip: bool) -> None:
        conn.executemany("INSERT INTO system_logs (id, message) VALUES (?, ?)"
                         + (" ON CONFLICT (id) DO NOTHING" if skip else ""), rows)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # sqlite3's datetime adapter
        assert _stored(rows, batch, skip_existing) == _stored(rows, plain, skip_existing)


def test_sqlite_delete_ids_deletes_exactly_those_ids() -> None:
    ids = [f"id-{i}" for i in range(40_000)] + ['quote " and \\ and 😀']
    # More ids than SQLite takes parameters (32,766), some of them absent.
    gone = ids[::2] + ["absent", "id-1 "]
    with contextlib.closing(sqlite3.connect(":memory:", isolation_level=None)) as conn:
        conn.execute("CREATE TABLE system_logs (id TEXT PRIMARY KEY, message)")
        conn.executemany("INSERT INTO system_logs VALUES (?, 'm')", [(i,) for i in ids])
        assert delete_ids(conn, "system_logs", gone) == len(ids[::2])
        left = [r[0] for r in conn.execute("SELECT id FROM system_logs ORDER BY rowid")]
    assert left == ids[1::2]
