"""The REST list endpoint against the direct library call, at 1M agent_logs rows on SQLite.

    python -m benchmarks.bench_api                       # 1,000,000 agent_logs rows
    BENCH_API_ROWS=100000 python -m benchmarks.bench_api  # a quick run

The database is generated once with raw sqlite3 ``executemany`` under benchmarks/.data/
(git-ignored) and reused. Each scenario reads one 100-row page:

- library: ``await db.page_agent_logs(...)``, the baseline
- app:     ``GET /api/agent-logs?...`` handed straight to the ASGI app (middleware, routing,
           query validation, the same library call, JSON encoding): what the endpoint costs
- httpx:   the same GET through ``httpx.AsyncClient(transport=ASGITransport(app))``, which adds
           the client's own request building and response parsing
- uvicorn: the same GET to a real ``orchestrator-db serve`` (access log on, as served by
           default) over a kept-alive connection, sent and read by a minimal HTTP/1.1 client
           (``raw_get``): the service's cost, TCP and uvicorn's HTTP parsing included
- +httpx:  the same, through ``httpx.AsyncClient`` (its own ~0.5-2 ms a request on top: the
           client's cost, not the service's)

Targets (issue 12): app ≤ 3× the library call; uvicorn ≤ 4×.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from orchestrator_db import DatabaseManager
from orchestrator_db.api import create_app
from orchestrator_db.models import format_ts
from orchestrator_db.store.base import uuid7
from orchestrator_db.tables import COLUMNS

ROWS = int(os.environ.get("BENCH_API_ROWS", "1000000"))
AGENTS = 100
SAMPLES = int(os.environ.get("BENCH_API_SAMPLES", "300"))
DATA = Path(__file__).parent / ".data"
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARNING", "ERROR")
BATCH = 50_000


def make_database(rows: int) -> Path:
    """Create (once) a SQLite database with 100 agents in 10 sessions and ``rows`` log rows."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"api_{rows}.db"
    if path.exists():
        with sqlite3.connect(path) as conn:
            (n,) = conn.execute("SELECT count(*) FROM agent_logs").fetchone()
        if n == rows:
            return path
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    async def schema() -> None:  # the real migrations, triggers included
        async with DatabaseManager(path) as db:
            oa = await db.create_orchestrator_agent("bench")
            for i in range(AGENTS):
                await db.create_agent(oa, f"session-{i % 10}", name=f"agent-{i}")

    asyncio.run(schema())
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    agents = [r[0] for r in conn.execute("SELECT id FROM agents ORDER BY created_at, id")]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # The columns every log row has (the OpenTelemetry ids a later migration added stay NULL).
    columns = ("id", "agent_id", "log_level", "log_type", "message", "details", "created_at")
    assert set(columns) <= set(COLUMNS["agent_logs"])
    sql = (f"INSERT INTO agent_logs ({', '.join(columns)}) "
           f"VALUES ({', '.join('?' for _ in columns)})")
    for offset in range(0, rows, BATCH):
        batch = []
        for i in range(offset, min(offset + BATCH, rows)):
            batch.append((uuid7(), agents[i % AGENTS], LEVELS[i % len(LEVELS)],
                          "step_start" if i % 50 == 0 else "event",
                          f"log line {i}: did something worth recording", f'{{"i": {i}}}',
                          format_ts(start + timedelta(milliseconds=i))))
        conn.execute("BEGIN")
        conn.executemany(sql, batch)
        conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    print(f"generated {rows:,} agent_logs rows in {time.perf_counter() - started:.1f} s "
          f"({path})", flush=True)
    return path


async def asgi_get(app: Any, path: str, query: str) -> bytes:
    """One GET through the ASGI interface, with no client library in between."""
    chunks: list[bytes] = []
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "", "headers": [(b"host", b"127.0.0.1")],
             "client": ("127.0.0.1", 1), "server": ("bench", 80)}
    await app(scope, receive, send)
    assert status == 200, b"".join(chunks)
    return b"".join(chunks)


class RawClient:
    """One kept-alive HTTP/1.1 connection: GET and read the body, nothing else."""

    def __init__(self, base: str) -> None:
        host, port = base.split("//", 1)[1].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.status = 0  # of the last answer

    async def get(self, target: str, *, ok_only: bool = True) -> bytes:
        try:
            return await self._get(target, ok_only)
        except (asyncio.IncompleteReadError, ConnectionError):
            # uvicorn closes a connection idle for 5 s: open a new one, once.
            await self.close()
            return await self._get(target, ok_only)

    async def _get(self, target: str, ok_only: bool) -> bytes:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        assert self.status == 200 or not ok_only, head
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return await self.reader.readexactly(length)

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def timed(*calls: Callable[[], Awaitable[Any]], rounds: int = 10) -> list[float]:
    """Median milliseconds of ``SAMPLES`` calls of each, after a warm-up.

    The calls take turns, ``SAMPLES // rounds`` at a time, so a burst of load from elsewhere on
    the machine weighs on all of them alike rather than on whichever ran then.
    """
    for call in calls:
        for _ in range(20):
            await call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for call, out in zip(calls, times, strict=True):
            for _ in range(max(1, SAMPLES // rounds)):
                t0 = time.perf_counter()
                await call()
                out.append((time.perf_counter() - t0) * 1000)
    return [statistics.median(out) for out in times]


def start_server(url: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from orchestrator_db.cli import main; main()", "serve",
         "--port", "0", "--url", url, "--log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Uvicorn running on" in line:
            port = line.split("127.0.0.1:")[1].split()[0]
            # Keep reading its log (one access line per request), or the pipe fills and the
            # server blocks on writing it.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, f"http://127.0.0.1:{port}"
    raise RuntimeError("server did not start")


def stop_server(proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Stop a server from ``start_server``: SIGTERM, then SIGKILL if it does not exit in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def main() -> None:
    path = await asyncio.to_thread(make_database, ROWS)
    url = f"sqlite:///{path.resolve()}"
    async with DatabaseManager(url=url) as db:
        agent = (await db.list_agents(limit=1, cursor=None))[0]["id"]
        middle = (await db.page_agent_logs(limit=1, offset=ROWS // 2)).items[0]
        from orchestrator_db.pagination import encode_cursor
        deep_cursor = encode_cursor(middle, "asc")
        scenarios: list[tuple[str, dict[str, Any]]] = [
            ("newest 100 (order=desc)", {"order": "desc"}),
            ("newest 100 of one agent", {"agent_id": agent, "order": "desc"}),
            (f"page at row {ROWS // 2:,} (cursor)", {"cursor": deep_cursor}),
            ("newest 100 ERROR+ of one session", {"session_id": "session-3",
                                                  "min_level": "ERROR", "order": "desc"}),
        ]

        app = create_app(manager=db)
        proc, base = start_server(url)
        raw_client = RawClient(base)
        results = []
        try:
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as local, \
                    httpx.AsyncClient(base_url=base) as remote:
                for name, params in scenarios:
                    query = {**params, "limit": 100}
                    page = await db.page_agent_logs(**query)
                    r = await local.get("/api/agent-logs", params=query)
                    assert r.status_code == 200, r.text
                    assert [row["id"] for row in r.json()["items"]] == [
                        row["id"] for row in page.items]
                    assert len(page.items) == 100, (name, len(page.items))
                    raw = urlencode(query)
                    direct = json.loads(await asgi_get(app, "/api/agent-logs", raw))
                    assert direct["items"] == page.items
                    target = f"/api/agent-logs?{raw}"
                    assert json.loads(await raw_client.get(target))["items"] == page.items
                    lib, bare, inproc, served, http = await timed(
                        lambda q=query: db.page_agent_logs(**q),
                        lambda r=raw: asgi_get(app, "/api/agent-logs", r),
                        lambda q=query: local.get("/api/agent-logs", params=q),
                        lambda t=target: raw_client.get(t),
                        lambda q=query: remote.get("/api/agent-logs", params=q))
                    results.append((name, lib, bare, inproc, served, http))
        finally:
            await raw_client.close()
            stop_server(proc, timeout=20)

    print(f"\nGET /api/agent-logs, 100-row pages, {ROWS:,} agent_logs rows, SQLite, "
          f"median of {SAMPLES}")
    header = (f"{'scenario':34} {'library':>8} {'app':>8} {'ratio':>5} {'httpx':>8} {'ratio':>5} "
              f"{'uvicorn':>8} {'ratio':>5} {'+httpx':>8} {'ratio':>5}")
    print(header)
    print("-" * len(header))
    for name, lib, bare, inproc, served, http in results:
        print(f"{name:34} {lib:6.2f}ms {bare:6.2f}ms {bare / lib:4.1f}× {inproc:6.2f}ms "
              f"{inproc / lib:4.1f}× {served:6.2f}ms {served / lib:4.1f}× {http:6.2f}ms "
              f"{http / lib:4.1f}×")
    worst = max(bare / lib for _, lib, bare, *_ in results)
    print(f"\nworst app/library ratio {worst:.1f}× (target ≤ 3×)")
    worst = max(served / lib for _, lib, _, _, served, _ in results)
    print(f"worst uvicorn/library ratio {worst:.1f}× (target ≤ 4×)")


if __name__ == "__main__":
    asyncio.run(main())
