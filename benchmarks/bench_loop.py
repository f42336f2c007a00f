"""Event-loop lag of the service under load: does anything block the loop?

    python -m benchmarks.bench_loop                         # 200,000 agent_logs rows
    BENCH_LOOP_ROWS=1000000 python -m benchmarks.bench_loop # the issue's 1M rows

One process serves the app with uvicorn and runs a ticker task that asks to wake every 1 ms and
records how late it woke (that delay is time the loop spent on something else). Meanwhile, from
other processes: 20 clients page deep through ``GET /api/agent-logs`` and ``/api/sessions``, a
writer ingests through ``OrchestratorDBHandler``, and 20 WebSocket subscribers follow
``/ws/events``. Printed: the lag distribution, and how late live events arrived.

Targets (issue 12): lag p99 ≤ 10 ms, max ≤ 50 ms; live events median < 250 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import textwrap
import time
from pathlib import Path

import httpx
import uvicorn
import websockets

from orchestrator_db.api import create_app

from .bench_api import make_database

ROWS = int(os.environ.get("BENCH_LOOP_ROWS", "200000"))
SECONDS = float(os.environ.get("BENCH_LOOP_SECONDS", "15"))
CLIENTS, SUBSCRIBERS = 20, 20
PORT = int(os.environ.get("BENCH_LOOP_PORT", "8765"))

WRITER = textwrap.dedent(
    """
    import logging, sys, time
    from orchestrator_db import OrchestratorDBHandler
    handler = OrchestratorDBHandler(sys.argv[1], flush_interval_ms=20)
    log = logging.getLogger("bench.writer"); log.addHandler(handler); log.setLevel(logging.INFO)
    end = time.time() + float(sys.argv[2])
    while time.time() < end:
        for _ in range(50):
            log.info("written at %r", time.time())
        time.sleep(0.1)  # 500 records a second
    handler.close()
    """
)


async def _clients(base: str, seconds: float) -> int:
    """Page deep through logs and sessions from CLIENTS concurrent clients; return requests."""
    done = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        async def one(n: int) -> None:
            nonlocal done
            end = time.monotonic() + seconds
            cursor = None
            while time.monotonic() < end:
                path = "/api/sessions" if n % 4 == 0 else "/api/agent-logs"
                params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                page = (await http.get(path, params=params)).json()
                cursor = page.get("next_cursor") if path != "/api/sessions" else None
                done += 1
        await asyncio.gather(*(one(n) for n in range(CLIENTS)))
    return done


async def _subscribers(url: str, seconds: float) -> list[float]:
    """Follow /ws/events from SUBSCRIBERS clients; return each event's delay in ms."""
    delays: list[float] = []

    async def one() -> None:
        async with websockets.connect(url) as ws:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    message = await asyncio.wait_for(ws.recv(), timeout=1)
                except TimeoutError:
                    continue
                row = json.loads(message).get("row") or {}
                text = row.get("message", "")
                if text.startswith("written at "):
                    delays.append((time.time() - float(text.split()[-1])) * 1000)
    await asyncio.gather(*(one() for _ in range(SUBSCRIBERS)))
    return delays


def load(port: int, seconds: float) -> None:
    """The load side (its own process): clients and subscribers; prints a JSON summary."""
    async def main() -> dict[str, object]:
        base = f"http://127.0.0.1:{port}"
        requests, delays = await asyncio.gather(
            _clients(base, seconds), _subscribers(f"ws://127.0.0.1:{port}/ws/events", seconds))
        return {"requests": requests, "delays": delays}
    print(json.dumps(asyncio.run(main())))


async def serve(path: Path) -> None:
    app = create_app(db_path=path)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=PORT, log_level="warning",
                                           ws_max_size=1 << 20))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            asked = loop.time()
            await asyncio.sleep(0.001)
            lags.append((loop.time() - asked - 0.001) * 1000)

    ticking = asyncio.create_task(ticker())
    writer = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(path),
                                                  str(SECONDS))
    loader = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.bench_loop", "--load", str(PORT), str(SECONDS),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await loader.communicate()
    await writer.wait()
    stop.set()
    await ticking
    server.should_exit = True
    await serving
    result = json.loads(out)
    lags.sort()
    delays = sorted(result["delays"])

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")

    print(f"{ROWS:,} agent_logs rows; {SECONDS:.0f} s; {CLIENTS} paging clients "
          f"({result['requests']:,} requests), a handler writer, {SUBSCRIBERS} subscribers")
    print(f"event-loop lag ms: p50 {pct(lags, .5):.2f}  p99 {pct(lags, .99):.2f}  "
          f"max {lags[-1]:.1f}  (target p99 ≤ 10, max ≤ 50)  [{len(lags):,} ticks]")
    print(f"live event delay ms: median {statistics.median(delays) if delays else float('nan'):.0f}"
          f"  p99 {pct(delays, .99):.0f}  (target median < 250)  [{len(delays):,} events]")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--load":
        load(int(sys.argv[2]), float(sys.argv[3]))
        return
    asyncio.run(serve(make_database(ROWS)))


if __name__ == "__main__":
    main()
