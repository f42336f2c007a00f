"""Event-loop lag of the service under load: does anything block the loop?

    python -m benchmarks.bench_loop                         # 200,000 agent_logs rows
    BENCH_LOOP_ROWS=1000000 python -m benchmarks.bench_loop # the issue's 1M rows
    BENCH_LOOP_MODE=sessions python -m benchmarks.bench_loop  # 4 clients on /api/sessions only
    BENCH_LOOP_DEBUG=1 ...                                  # also log each callback over 10 ms
    BENCH_LOOP_PROFILE=1 ...                                # and where the loop's time goes

One process serves the app with uvicorn and runs a ticker task that asks to wake every 1 ms and
records how late it woke (that delay is time the loop spent on something else). Meanwhile, from
other processes: 20 clients page deep through ``GET /api/agent-logs`` and ``/api/sessions`` (or,
in ``sessions`` mode, 4 clients ask for ``/api/sessions`` one after another), a writer ingests
through ``OrchestratorDBHandler``, and 20 WebSocket subscribers follow ``/ws/events`` while a
probe asks for ``/healthz`` every 20 ms. Clients, subscribers and probe each run in a process of
their own, so a busy client process does not delay what the others measure. Printed: the lag
distribution, how late live events arrived and how long ``/healthz`` took.

Targets (issue 12): lag p99 ≤ 10 ms, max ≤ 50 ms; live events median < 250 ms; in sessions
mode on SQLite, ``/healthz`` p99 ≤ 20 ms and live events p99 ≤ 150 ms.
"""

from __future__ import annotations

import asyncio
import json
import logging
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

from .bench_api import RawClient, make_database

ROWS = int(os.environ.get("BENCH_LOOP_ROWS", "200000"))
SECONDS = float(os.environ.get("BENCH_LOOP_SECONDS", "15"))
# "mixed"; "sessions": 4 clients on /api/sessions only; "logs": /api/agent-logs only
MODE = os.environ.get("BENCH_LOOP_MODE", "mixed")
CLIENTS = 4 if MODE == "sessions" else 20
SUBSCRIBERS = 20
PORT = int(os.environ.get("BENCH_LOOP_PORT", "8765"))
PROBE_EVERY = 0.02  # seconds between two /healthz

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


async def _clients(base: str, seconds: float) -> dict[str, int]:
    """Page deep through logs and sessions from CLIENTS concurrent clients; count requests."""
    done = failed = 0
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        async def one(n: int) -> None:
            nonlocal done, failed
            end = time.monotonic() + seconds
            cursor = None
            while time.monotonic() < end:
                sessions = MODE == "sessions" or (MODE != "logs" and n % 4 == 0)
                path = "/api/sessions" if sessions else "/api/agent-logs"
                params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                response = await http.get(path, params=params)
                cursor = None if sessions else response.json().get("next_cursor")
                done += 1
                failed += response.status_code != 200
        await asyncio.gather(*(one(n) for n in range(CLIENTS)))
    return {"requests": done, "failed": failed}


async def _probe(base: str, seconds: float) -> list[float]:
    """Ask for /healthz every PROBE_EVERY seconds; return each answer's time in ms."""
    client = RawClient(base)
    times: list[float] = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            started = time.perf_counter()
            await client.get("/healthz")
            times.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(PROBE_EVERY)
    finally:
        await client.close()
    return times


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


def load(role: str, port: int, seconds: float) -> None:
    """One load process (``role``: clients, subscribers or probe); prints its results as JSON."""
    async def main() -> dict[str, object]:
        base = f"http://127.0.0.1:{port}"
        if role == "clients":
            return await _clients(base, seconds)
        if role == "probe":
            return {"healthz": await _probe(base, seconds)}
        return {"delays": await _subscribers(f"ws://127.0.0.1:{port}/ws/events", seconds)}
    print(json.dumps(asyncio.run(main())))


async def serve(path: Path) -> None:
    if os.environ.get("BENCH_LOOP_DEBUG"):  # name every callback that holds the loop > 10 ms
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.01
        logging.basicConfig(level=logging.WARNING)
    app = create_app(db_path=path)
    # As `orchestrator-db serve` configures uvicorn (cli/service.py).
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=PORT, log_level="warning",
                                           ws_max_size=1 << 20, ws_per_message_deflate=False))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    lags: list[float] = []
    stop = asyncio.Event()
    worst: list[tuple[float, float]] = []  # (lag ms, seconds into the run) over 50 ms

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not stop.is_set():
            asked = loop.time()
            await asyncio.sleep(0.001)
            lags.append((loop.time() - asked - 0.001) * 1000)
            if lags[-1] > 50:
                worst.append((lags[-1], asked - started))

    ticking = asyncio.create_task(ticker())
    profiler = None
    if os.environ.get("BENCH_LOOP_PROFILE"):  # where the loop's time goes (pip install pyinstrument)
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
    writer = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(path),
                                                  str(SECONDS))
    loaders = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.bench_loop", "--load", role, str(PORT), str(SECONDS),
        stdout=asyncio.subprocess.PIPE) for role in ("clients", "subscribers", "probe")]
    outs = [(await loader.communicate())[0] for loader in loaders]
    await writer.wait()
    if profiler is not None:
        from pyinstrument.renderers import ConsoleRenderer

        profiler.stop()
        print("\n".join(profiler.output(ConsoleRenderer(
            unicode=False, color=False, flat=True, show_all=True)).splitlines()[:60]))
    stop.set()
    await ticking
    server.should_exit = True
    await serving
    result = {key: value for out in outs for key, value in json.loads(out).items()}
    lags.sort()
    delays = sorted(result["delays"])
    healthz = sorted(result["healthz"])

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")

    what = "clients on /api/sessions" if MODE == "sessions" else "paging clients"
    print(f"{ROWS:,} agent_logs rows; {SECONDS:.0f} s; {CLIENTS} {what} "
          f"({result['requests']:,} requests, {result['failed']:,} not 200), a handler writer, "
          f"{SUBSCRIBERS} subscribers")
    print(f"event-loop lag ms: p50 {pct(lags, .5):.2f}  p99 {pct(lags, .99):.2f}  "
          f"max {lags[-1]:.1f}  (target p99 ≤ 10, max ≤ 50)  [{len(lags):,} ticks]")
    print(f"live event delay ms: median {statistics.median(delays) if delays else float('nan'):.0f}"
          f"  p99 {pct(delays, .99):.0f}  (target median < 250; sessions mode: p99 ≤ 150)  "
          f"[{len(delays):,} events]")
    if worst:
        print("lags over 50 ms (ms @ s into the run): "
              + ", ".join(f"{lag:.0f} @ {at:.1f}" for lag, at in worst[:10]))
    print(f"/healthz ms: p50 {pct(healthz, .5):.1f}  p99 {pct(healthz, .99):.1f}  "
          f"max {healthz[-1] if healthz else float('nan'):.1f}  (sessions mode target: p99 ≤ 20)"
          f"  [{len(healthz):,} probes]")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--load":
        load(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    asyncio.run(serve(make_database(ROWS)))


if __name__ == "__main__":
    main()
