"""``copy`` SQLite → PostgreSQL against a bare asyncpg ``copy_records_to_table`` of the same rows.

    python -m benchmarks.bench_copy                 # 1,000,000 agent_logs rows
    BENCH_COPY_ROWS=100000 python -m benchmarks.bench_copy   # a quick run

The source is generated once with raw sqlite3 under benchmarks/.data/ (git-ignored) and reused.
The baseline is the fastest thing PostgreSQL can do with these rows: the records already built in
memory as driver values and handed to one ``copy_records_to_table``. ``copy`` has to read them from
SQLite, convert them, write them in batches (one transaction each) and then verify both sides.
PostgreSQL comes from ORCHESTRATOR_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/test);
each run uses its own schema, dropped at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from orchestrator_db import DatabaseManager, render_sqlite_schema
from orchestrator_db.ids import uuid7
from orchestrator_db.models import format_ts
from orchestrator_db.tables import COLUMNS
from orchestrator_db.transfer import copy_database

PG_URL = os.environ.get("ORCHESTRATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROWS = int(os.environ.get("BENCH_COPY_ROWS", "1000000"))
BATCH = int(os.environ.get("BENCH_COPY_BATCH", "5000"))
# Best of REPEAT runs of each measurement: the machine is shared, the best run is the least noisy.
REPEAT = int(os.environ.get("BENCH_COPY_REPEAT", "3"))
DATA = Path(__file__).parent / ".data"
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARNING", "ERROR")


def make_source(rows: int) -> Path:
    """Create (once) a SQLite database with one agent and ``rows`` agent_logs rows."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"copy_source_{rows}.db"
    if path.exists():
        with sqlite3.connect(path) as conn:
            (n,) = conn.execute("SELECT count(*) FROM agent_logs").fetchone()
        if n == rows:
            return path
        path.unlink()
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    conn.executescript(render_sqlite_schema())
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = format_ts(start)
    oa, agent = uuid7(), uuid7()
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO orchestrator_agents (id, name, status, created_at, updated_at) "
        "VALUES (?, 'bench', 'active', ?, ?)", (oa, now, now))
    conn.execute(
        "INSERT INTO agents (id, orchestrator_agent_id, session_id, status, created_at, "
        "updated_at) VALUES (?, ?, 'bench-session', 'completed', ?, ?)", (agent, oa, now, now))

    def logs():  # type: ignore[no-untyped-def]
        for i in range(rows):
            yield (uuid7(), agent, LEVELS[i % len(LEVELS)], "event",
                   f"step {i} done: ünïcode ✓ and some text of a typical log line",
                   json.dumps({"i": i, "step": "build", "ok": i % 7 != 0}),
                   format_ts(start + timedelta(microseconds=i * 10)))

    conn.executemany("INSERT INTO agent_logs (id, agent_id, log_level, log_type, message, "
                     "details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", logs())
    conn.execute("COMMIT")
    conn.close()
    tmp.rename(path)
    return path


def driver_records(path: Path) -> list[tuple[object, ...]]:
    """The agent_logs rows as asyncpg values (uuid, datetime, decoded JSON), built in memory."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT {', '.join(COLUMNS['agent_logs'])} FROM agent_logs "
                            "ORDER BY created_at, id").fetchall()
    return [(uuid.UUID(r[0]), uuid.UUID(r[1]), r[2], r[3], r[4], json.loads(r[5]),
             datetime.fromisoformat(r[6])) for r in rows]


async def fresh_schema(conn: asyncpg.Connection, name: str) -> str:
    await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    await conn.execute(f"CREATE SCHEMA {name}")
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}search_path={name}"
    async with DatabaseManager(url=url):  # create the tables with the package's migrations
        pass
    return url


async def bare_copy(admin: asyncpg.Connection, schema: str, records: list[tuple[object, ...]],
                    oa: dict[str, object], agent: dict[str, object]) -> float:
    """Seconds for one copy_records_to_table of every record into a fresh schema."""
    url = await fresh_schema(admin, schema)
    conn = await asyncpg.connect(url)
    try:
        await conn.set_type_codec("jsonb", encoder=lambda v: b"\x01" + json.dumps(v).encode(),
                                  decoder=lambda b: json.loads(b[1:]), schema="pg_catalog",
                                  format="binary")
        await conn.execute(
            "INSERT INTO orchestrator_agents (id, name, status, created_at, updated_at) "
            "VALUES ($1, $2, 'active', now(), now())", oa["id"], oa["name"])
        await conn.execute(
            "INSERT INTO agents (id, orchestrator_agent_id, session_id, status, created_at, "
            "updated_at) VALUES ($1, $2, 'x', 'completed', now(), now())", agent["id"], oa["id"])
        t = time.perf_counter()
        await conn.copy_records_to_table("agent_logs", records=records,
                                         columns=list(COLUMNS["agent_logs"]))
        return time.perf_counter() - t
    finally:
        await conn.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")


async def main() -> None:
    t0 = time.perf_counter()
    source = make_source(ROWS)
    print(f"source: {ROWS:,} agent_logs rows in {source} ({time.perf_counter() - t0:.1f} s)")
    admin = await asyncpg.connect(PG_URL)
    suffix = uuid.uuid4().hex[:8]
    try:
        # Baseline: one bare COPY of records already in memory, into the same table definition.
        records = driver_records(source)
        async with DatabaseManager(source) as src:
            oa = (await src.list_orchestrator_agents())[0]
            agent = (await src.list_agents())[0]
        bare = min([await bare_copy(admin, f"bench_bare_{suffix}", records, oa, agent)
                    for _ in range(REPEAT)])
        del records

        # copy, without and with the final verification.
        copy_only = with_verify = float("inf")
        for _ in range(REPEAT):
            for verify in (False, True):
                url = await fresh_schema(admin, f"bench_copy_{suffix}")
                t = time.perf_counter()
                result = await copy_database(source, url, batch_size=BATCH, verify=verify)
                seconds = time.perf_counter() - t
                assert result.copied_rows == ROWS + 2, result
                assert result.verified == verify
                if verify:
                    with_verify = min(with_verify, seconds)
                else:
                    copy_only = min(copy_only, seconds)
                await admin.execute(f"DROP SCHEMA bench_copy_{suffix} CASCADE")
    finally:
        await admin.close()

    def line(name: str, seconds: float) -> str:
        return (f"{name:<44} {seconds:8.2f} s {ROWS / seconds:>10,.0f} rows/s "
                f"{bare / seconds:6.2f}x")

    print(f"best of {REPEAT} run(s) each; batches of {BATCH:,} rows")
    print(f"{'':<44} {'time':>10} {'throughput':>17} {'vs bare':>7}")
    print(line("bare asyncpg copy_records_to_table", bare))
    print(line("copy, without the final verification", copy_only))
    print(line("copy + verification (what the CLI runs)", with_verify))
    print("target: copy ≥ 0.5x bare")


if __name__ == "__main__":
    asyncio.run(main())
