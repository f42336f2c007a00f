"""Event-loop lag of the service under load: does anything block the loop?

    python -m benchmarks.bench_loop                         # 200,000 agent_logs rows
    BENCH_LOOP_ROWS=1000000 python -m benchmarks.bench_loop # the issue's 1M rows
    BENCH_LOOP_MODE=sessions python -m benchmarks.bench_loop  # 4 clients on /api/sessions only
    BENCH_LOOP_MODE=idle ...                                # no load: the machine's own lag
    BENCH_LOOP_BATCH=0 ...                                  # subscribers: one message per event
    BENCH_LOOP_NICE=10 ...                                  # clients, subscribers at nice 10
    BENCH_LOOP_DEBUG=1 ...                                  # also log each callback over 10 ms
    BENCH_LOOP_PROFILE=1 ...                                # and where the loop's time goes

One process serves the app with uvicorn and runs a ticker task that asks to wake every 1 ms and
records how late it woke (that delay is time the loop spent on something else). Meanwhile, from
other processes: 20 clients page deep through ``GET /api/agent-logs`` and ``/api/sessions`` (or,
in ``sessions`` mode, 4 clients ask for ``/api/sessions`` one after another), a writer ingests
through ``OrchestratorDBHandler``, and 20 WebSocket subscribers follow ``/ws/events`` while a
probe asks for ``/healthz`` every 20 ms. Clients, subscribers and probe each run in a process of
their own, so a busy client process does not delay what the others measure. Subscribers ask
for batched messages (``batch=1``, as the dashboard does). Printed: the lag distribution (counted
once every load process has started, until the first ends), the same less the time the loop's
thread waited for a core (the kernel's run-queue wait: the machine's share, since clients,
subscribers and whatever else runs on the box share its 2 cores), the loop thread's CPU time,
how late live events arrived and how long ``/healthz`` took.

Targets (issue 12): lag p99 ≤ 10 ms, max ≤ 50 ms; live events median < 250 ms; in sessions
mode on SQLite, ``/healthz`` p99 ≤ 20 ms and live events p99 ≤ 150 ms.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import resource
import statistics
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import websockets

from orchestrator_db.api import create_app

from .bench_api import RawClient, make_database

ROWS = int(os.environ.get("BENCH_LOOP_ROWS", "200000"))
SECONDS = float(os.environ.get("BENCH_LOOP_SECONDS", "15"))
# "mixed"; "sessions": 4 clients on /api/sessions only; "logs": /api/agent-logs only; "idle":
# no clients, subscribers or writes, only the /healthz probe (the machine's own share of the lag)
MODE = os.environ.get("BENCH_LOOP_MODE", "mixed")
CLIENTS = {"sessions": 4, "idle": 0}.get(MODE, 20)
SUBSCRIBERS = 0 if MODE == "idle" else 20
# Subscribers ask for batched messages (one JSON array per burst), as the dashboard does;
# BENCH_LOOP_BATCH=0: one message per event, the default of /ws/events.
BATCHED = os.environ.get("BENCH_LOOP_BATCH", "1") != "0"
PORT = int(os.environ.get("BENCH_LOOP_PORT", "8765"))
PROBE_EVERY = 0.02  # seconds between two /healthz
# The paging clients and the subscribers stand for users on other machines, yet share the
# service's cores here: BENCH_LOOP_NICE=10 runs them at that niceness, so the service gets a core
# first. The writer (a process on the service's machine) and the /healthz probe never are.
NICE = int(os.environ.get("BENCH_LOOP_NICE", "0"))

WRITER = textwrap.dedent(
    """
    import logging, sys, time
    from orchestrator_db import OrchestratorDBHandler
    handler = OrchestratorDBHandler(sys.argv[1], flush_interval_ms=20)
    log = logging.getLogger("bench.writer"); log.addHandler(handler); log.setLevel(logging.INFO)
    print("ready", flush=True)
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
                now = time.time()
                events = json.loads(message)
                for event in events if isinstance(events, list) else [events]:
                    text = (event.get("row") or {}).get("message", "")
                    if text.startswith("written at "):
                        delays.append((now - float(text.split()[-1])) * 1000)
    await asyncio.gather(*(one() for _ in range(SUBSCRIBERS)))
    return delays


def load(role: str, port: int, seconds: float) -> None:
    """One load process (``role``: clients, subscribers or probe); prints its results as JSON."""
    if role != "probe" and NICE:
        os.nice(NICE)

    async def main() -> Any:
        base = f"http://127.0.0.1:{port}"
        if role == "clients":
            return await _clients(base, seconds)
        if role == "probe":
            return {"healthz": await _probe(base, seconds)}
        query = "?batch=1" if BATCHED else ""
        return {"delays": await _subscribers(f"ws://127.0.0.1:{port}/ws/events{query}",
                                             seconds)}
    print("ready", flush=True)  # imported: the service counts lags from when all are ready
    print(json.dumps(asyncio.run(main())))


async def serve(path: Path) -> None:
    if os.environ.get("BENCH_LOOP_DEBUG"):  # name every callback that holds the loop > 10 ms
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.01
        logging.basicConfig(level=logging.WARNING)
    if os.environ.get("BENCH_LOOP_HEAVY_PAGE"):  # experiment: pages above it read on the pool
        from orchestrator_db.manager import queries

        queries.HEAVY_PAGE = int(os.environ["BENCH_LOOP_HEAVY_PAGE"])
    app = create_app(db_path=path)
    # As `orchestrator-db serve` configures uvicorn (cli/service.py).
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=PORT, log_level="warning",
                                           ws_max_size=1 << 20, ws_per_message_deflate=False))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    lags: list[float] = []
    # Of each tick's lag, the part the loop's thread spent runnable but waiting for a core (the
    # kernel's run-queue wait, /proc/.../schedstat): time taken by the other processes on this
    # machine, not by anything the loop ran.
    queued: list[float] = []
    stop = asyncio.Event()
    worst: list[tuple[float, float, float]] = []  # (lag ms, of it queued ms, s into the run)
    schedstat = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)

    def sched() -> tuple[int, int]:  # ns on a core, ns waiting for one
        on_cpu, waiting, _ = os.pread(schedstat, 100, 0).split()
        return int(on_cpu), int(waiting)

    starting: list[float] = []  # lags while the load processes start (4 interpreters import)
    collections: list[tuple[int, float]] = []  # (generation, ms) of each garbage collection
    collecting = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[0] = time.perf_counter()
        elif recording:
            collections.append((info["generation"], (time.perf_counter() - collecting[0]) * 1e3))

    gc.callbacks.append(on_gc)
    recording = False

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not stop.is_set():
            _, waited = sched()
            asked = loop.time()
            await asyncio.sleep(0.001)
            lag = (loop.time() - asked - 0.001) * 1000
            if not recording:
                starting.append(lag)
                continue
            lags.append(lag)
            queued.append(min(lag, (sched()[1] - waited) / 1e6))
            if lag > 50:
                worst.append((lag, queued[-1], asked - started))

    ticking = asyncio.create_task(ticker())
    profiler = None
    if os.environ.get("BENCH_LOOP_PROFILE"):  # where the loop's time goes (pip install pyinstrument)
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), str(0 if MODE == "idle" else SECONDS),
        stdout=asyncio.subprocess.PIPE)
    loaders = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.bench_loop", "--load", role, str(PORT), str(SECONDS),
        stdout=asyncio.subprocess.PIPE) for role in ("clients", "subscribers", "probe")]
    for process in (writer, *loaders):
        assert process.stdout is not None
        await process.stdout.readline()  # "ready"
    cpu_before, queued_before = sched()
    wall_before = time.perf_counter()
    recording = True
    # The load ends when its first process does (the others end within a few ms); lags after
    # that (20 clients and 20 subscribers hanging up, processes exiting) are shown apart.
    talks = [asyncio.ensure_future(loader.communicate()) for loader in loaders]
    busy = talks[2:] if MODE == "idle" else talks  # idle: only the probe has work
    await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
    recording = False
    cpu_after, queued_after = sched()
    wall = time.perf_counter() - wall_before
    ending_from = len(starting)
    outs = [(await talk)[0] for talk in talks]
    await writer.wait()
    if profiler is not None:
        from pyinstrument.renderers import ConsoleRenderer

        profiler.stop()
        print("\n".join(profiler.output(ConsoleRenderer(
            unicode=False, color=False, flat=True, show_all=True)).splitlines()[:60]))
    stop.set()
    await ticking
    gc.callbacks.remove(on_gc)
    os.close(schedstat)
    ending = starting[ending_from:]
    server.should_exit = True
    await serving
    result = {key: value for out in outs
              for key, value in json.loads(out.splitlines()[-1]).items()}
    own = sorted(lag - q for lag, q in zip(lags, queued, strict=True))
    lags.sort()
    delays = sorted(result["delays"])
    healthz = sorted(result["healthz"])

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")

    what = "clients on /api/sessions" if MODE == "sessions" else "paging clients"
    print(f"{ROWS:,} agent_logs rows; {SECONDS:.0f} s; {CLIENTS} {what} "
          f"({result['requests']:,} requests, {result['failed']:,} not 200), a handler writer, "
          f"{SUBSCRIBERS} subscribers ({'batched' if BATCHED else 'one message per event'}); "
          f"clients and subscribers at nice {NICE}")
    print(f"event-loop lag ms: p50 {pct(lags, .5):.2f}  p99 {pct(lags, .99):.2f}  "
          f"max {lags[-1]:.1f}  (target p99 ≤ 10, max ≤ 50)  [{len(lags):,} ticks; not counted: "
          f"while the load processes start, max {max(starting[:ending_from], default=0):.1f}; "
          f"as they end, max {max(ending, default=0):.1f}]")
    print(f"live event delay ms: median {statistics.median(delays) if delays else float('nan'):.0f}"
          f"  p99 {pct(delays, .99):.0f}  (target median < 250; sessions mode: p99 ≤ 150)  "
          f"[{len(delays):,} events]")
    print(f"  less each tick's wait for a core: p50 {pct(own, .5):.2f}  p99 {pct(own, .99):.2f}  "
          f"max {own[-1]:.1f}  (the loop thread waited {(queued_after - queued_before) / 1e9:.1f}"
          f" s for a core in all)")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"loop thread on a core: {(cpu_after - cpu_before) / 1e9:.1f} s of {wall:.1f} s "
          f"({(cpu_after - cpu_before) / 1e9 / wall:.0%}); "
          f"{(cpu_after - cpu_before) / 1e3 / max(1, result['requests']):.0f} µs per request; "
          f"the load processes used {children.ru_utime + children.ru_stime:.1f} CPU s, "
          f"the machine's load average was {os.getloadavg()[0]:.1f} (2 cores)")
    full = [ms for generation, ms in collections if generation == 2]
    print(f"garbage collections: {len(collections):,}, {sum(ms for _, ms in collections):.0f} ms "
          f"in all; {len(full)} of the oldest generation, longest {max(full, default=0):.1f} ms")
    if worst:
        print("lags over 50 ms (ms, of it waiting for a core, @ s into the run): "
              + ", ".join(f"{lag:.0f} ({q:.0f}) @ {at:.1f}" for lag, q, at in worst[:10]))
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
