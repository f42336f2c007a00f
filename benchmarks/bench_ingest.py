"""Log ingestion: the handler, group commit and single-write latency against the raw drivers.

Run with ``python -m benchmarks.bench_ingest``. Every figure is measured in this run, on a
database created by orchestrator-db (same schema, indexes and triggers for every contender), and
printed with its ratio to the baseline it is judged against:

- handler, 50 coroutines logging      vs sqlite3 executemany in one transaction (target ≥ 0.6×)
                                        and the seed's aiosqlite INSERT + commit per row (≥ 20×)
- 50 coroutines awaiting create_agent_log, group commit on vs off (SQLite and PostgreSQL)
- one awaited create_agent_log         vs sqlite3 INSERT + commit (target ≤ 1.5×)
- PostgreSQL handler                   vs asyncpg copy_records_to_table
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import asyncpg

from orchestrator_db import DatabaseManager, OrchestratorDBHandler
from orchestrator_db.models import format_ts
from orchestrator_db.store.base import uuid7

PG_URL = os.environ.get("ORCHESTRATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
HANDLER_ROWS = 50_000
RAW_ROWS = 50_000
SEED_ROWS = 2_000
CONCURRENT = 50
INSERT = ("INSERT INTO agent_logs (id, agent_id, log_level, log_type, message, details, "
          "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")


def row(agent_id: str, i: int) -> tuple[str, str, str, str, str, str, str]:
    return (uuid7(), agent_id, "INFO", "log", f"message {i}", '{"logger": "bench"}',
            format_ts(datetime.now(UTC)))


async def new_sqlite(folder: Path, name: str) -> tuple[str, str]:
    url = f"sqlite:///{folder}/{name}.db"
    async with DatabaseManager(url=url) as db:
        oa = await db.create_orchestrator_agent("bench")
        agent = await db.create_agent(oa, "bench")
    return url, agent


def raw_connect(url: str) -> sqlite3.Connection:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def sqlite_executemany(url: str, agent: str) -> float:
    conn = raw_connect(url)
    rows = [row(agent, i) for i in range(RAW_ROWS)]
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(INSERT, rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return RAW_ROWS / elapsed


async def seed_pattern(url: str, agent: str, *, pragmas: bool) -> float:
    """The seeds' write: aiosqlite, INSERT + commit per row.

    As seeds 000/002 write it, the connection keeps SQLite's defaults (synchronous=FULL: one
    fsync per commit); seed 001 adds WAL and synchronous=NORMAL, measured too.
    """
    async with aiosqlite.connect(url.removeprefix("sqlite:///")) as conn:
        if pragmas:
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
        started = time.perf_counter()
        for i in range(SEED_ROWS):
            await conn.execute(INSERT, row(agent, i))
            await conn.commit()
        return SEED_ROWS / (time.perf_counter() - started)


async def handler_throughput(url: str, agent: str) -> float:
    handler = OrchestratorDBHandler(url, batch_size=1000, flush_interval_ms=50,
                                    queue_size=HANDLER_ROWS + 1)
    log = logging.getLogger(f"bench.{uuid.uuid4().hex}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    per_task = HANDLER_ROWS // CONCURRENT

    async def worker(w: int) -> None:
        for i in range(per_task):
            log.info("message %d %d", w, i, extra={"agent_id": agent})
            if i % 100 == 0:
                await asyncio.sleep(0)

    started = time.perf_counter()
    await asyncio.gather(*[worker(w) for w in range(CONCURRENT)])
    handler.close()  # returns once every record is committed
    elapsed = time.perf_counter() - started
    log.removeHandler(handler)
    assert handler.written == per_task * CONCURRENT and handler.dropped == 0, handler.dropped
    return per_task * CONCURRENT / elapsed


async def concurrent_awaits(url: str, agent: str, group_commit: bool) -> float:
    per_task = 100
    async with DatabaseManager(url=url) as db:
        db.store.group_commit = group_commit  # type: ignore[attr-defined]

        async def worker() -> None:
            for i in range(per_task):
                await db.create_agent_log(agent, f"awaited {i}")

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(CONCURRENT)])
        return CONCURRENT * per_task / (time.perf_counter() - started)


async def single_latency(url: str, agent: str, n: int = 2000) -> tuple[float, float]:
    """Median µs per awaited create_agent_log and per raw sqlite3 INSERT + COMMIT, interleaved.

    The raw side makes its row's id, JSON and time inside the timed part, as bench_store's
    does: code writing rows by hand has that work too, so both benchmarks measure one thing.
    """
    conn = raw_connect(url)
    ours, raw = [], []
    async with DatabaseManager(url=url) as db:
        for i in range(n):
            t0 = time.perf_counter()
            r = (uuid7(), agent, "INFO", "log", f"message {i}", json.dumps({"logger": "bench"}),
                 format_ts(datetime.now(UTC)))
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT, r)
            conn.execute("COMMIT")
            t1 = time.perf_counter()
            await db.create_agent_log(agent, f"message {i}", log_type="log",
                                      details={"logger": "bench"})
            t2 = time.perf_counter()
            raw.append(t1 - t0)
            ours.append(t2 - t1)
    conn.close()
    return statistics.median(ours) * 1e6, statistics.median(raw) * 1e6


async def pg_schema(action: str, schema: str) -> None:
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await conn.execute(f"{action} SCHEMA {schema}" + (" CASCADE" if action == "DROP" else ""))
    finally:
        await conn.close()


async def pg_figures() -> tuple[float, float, float, float] | str:
    schema = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    try:
        await pg_schema("CREATE", schema)
    except Exception as exc:  # no server: say so instead of failing the whole run
        return f"skipped ({type(exc).__name__}: {exc})"
    url = f"{PG_URL}?search_path={schema}"
    try:
        async with DatabaseManager(url=url) as db:
            oa = await db.create_orchestrator_agent("bench")
            agent = await db.create_agent(oa, "bench")
        conn = await asyncpg.connect(url)
        try:
            records = [(uuid.UUID(uuid7()), uuid.UUID(agent), "INFO", "log", f"m {i}", None,
                        datetime.now(UTC)) for i in range(HANDLER_ROWS)]
            columns = ["id", "agent_id", "log_level", "log_type", "message", "details",
                       "created_at"]
            started = time.perf_counter()
            for start in range(0, len(records), 1000):
                await conn.copy_records_to_table("agent_logs", records=records[start:start + 1000],
                                                 columns=columns)
            copy_rate = HANDLER_ROWS / (time.perf_counter() - started)
        finally:
            await conn.close()
        handler_rate = await handler_throughput(url, agent)
        off = await best_of(3, lambda: concurrent_awaits(url, agent, group_commit=False))
        on = await best_of(3, lambda: concurrent_awaits(url, agent, group_commit=True))
        return handler_rate, copy_rate, off, on
    finally:
        await pg_schema("DROP", schema)


def line(label: str, value: float, unit: str, ratio: str = "") -> None:
    print(f"  {label:<58} {value:>12,.0f} {unit:<6} {ratio}")


async def best_of(times: int, fn: Callable[[], Awaitable[float]]) -> float:
    return max([await fn() for _ in range(times)])


async def main() -> None:
    print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} CPUs; rows/s unless stated (best of 3 where marked *)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        limit = max([sqlite_executemany(*(await new_sqlite(folder, f"raw{i}")))
                     for i in range(3)])
        seed = await seed_pattern(*(await new_sqlite(folder, "seed")), pragmas=False)
        seed_normal = await seed_pattern(*(await new_sqlite(folder, "seed1")), pragmas=True)
        handler = await best_of(3, lambda: _handler(folder))
        print("SQLite")
        line("sqlite3 executemany, one transaction (the limit) *", limit, "rows/s")
        line("seed: aiosqlite INSERT + commit per row (as written)", seed, "rows/s",
             f"{seed / limit:.3f}x limit")
        line("seed with seed 001's pragmas (WAL, synchronous=NORMAL)", seed_normal, "rows/s",
             f"{seed_normal / limit:.3f}x limit")
        line(f"OrchestratorDBHandler, {CONCURRENT} coroutines logging *", handler, "rows/s",
             f"{handler / limit:.2f}x limit (target >= 0.6), {handler / seed:.0f}x seed "
             f"(target >= 20), {handler / seed_normal:.1f}x seed+pragmas")
        url, agent = await new_sqlite(folder, "awaits")
        off = await best_of(3, lambda: concurrent_awaits(url, agent, False))
        on = await best_of(3, lambda: concurrent_awaits(url, agent, True))
        line(f"{CONCURRENT} coroutines awaiting create_agent_log, no group commit *", off,
             "rows/s")
        line(f"{CONCURRENT} coroutines awaiting create_agent_log, group commit *", on, "rows/s",
             f"{on / off:.2f}x without")
        url, agent = await new_sqlite(folder, "latency")
        ours, raw = await single_latency(url, agent)
        line("one awaited create_agent_log (median)", ours, "µs", f"{ours / raw:.2f}x raw "
             "(target <= 1.5)")
        line("one sqlite3 INSERT + COMMIT, same table (median)", raw, "µs")
    print("PostgreSQL")
    figures = await pg_figures()
    if isinstance(figures, str):
        print(f"  {figures}")
    else:
        handler_rate, copy_rate, off, on = figures
        line("asyncpg copy_records_to_table, 1000 per call", copy_rate, "rows/s")
        line(f"OrchestratorDBHandler, {CONCURRENT} coroutines logging", handler_rate, "rows/s",
             f"{handler_rate / copy_rate:.2f}x copy")
        line(f"{CONCURRENT} coroutines awaiting create_agent_log, no group commit *", off,
             "rows/s", "(pool of 10: a transaction per row)")
        line(f"{CONCURRENT} coroutines awaiting create_agent_log, group commit *", on, "rows/s",
             f"{on / off:.2f}x without")


async def _handler(folder: Path) -> float:
    url, agent = await new_sqlite(folder, f"h{uuid.uuid4().hex[:6]}")
    return await handler_throughput(url, agent)


if __name__ == "__main__":
    asyncio.run(main())
