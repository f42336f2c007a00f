"""An acknowledged export is never lost, however the server is stopped cleanly mid-stream."""

from __future__ import annotations

import threading
import time

import httpx
from apihelpers import start_server
from otlphelpers import CHAT, PROTOBUF, agent_attrs, new_span, new_trace, span, traces

from orchestrator_db import DatabaseManager


def _request(index: int) -> tuple[str, bytes]:
    trace, agent = new_trace(), new_span()
    spans = [span(trace, agent, "invoke_agent a", attrs=agent_attrs(
        "a", **{"gen_ai.conversation.id": f"shutdown-{index}"}))]
    spans += [span(trace, new_span(), "chat", parent=agent, attrs=CHAT) for _ in range(200)]
    return f"shutdown-{index}", traces(spans).SerializeToString()


async def test_acknowledged_spans_survive_a_sigterm(db_url: str) -> None:
    server = start_server(db_url)
    requests = [_request(i) for i in range(40)]
    acknowledged: list[str] = []
    refused: list[int] = []

    def client(part: list[tuple[str, bytes]]) -> None:
        with httpx.Client(base_url=server.http, timeout=30) as http:
            for session, body in part:
                try:
                    r = http.post("/v1/traces", content=body,
                                  headers={"content-type": PROTOBUF})
                except httpx.HTTPError:
                    continue  # the server went away: not acknowledged
                if r.status_code == 200:
                    acknowledged.append(session)
                else:
                    refused.append(r.status_code)

    threads = [threading.Thread(target=client, args=(requests[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.proc.terminate()  # SIGTERM: uvicorn's graceful shutdown, then the lifespan's
    for t in threads:
        t.join(60)
    server.stop()
    assert acknowledged, "nothing was acknowledged before the stop"
    assert all(code in (503,) for code in refused), refused
    async with DatabaseManager(url=db_url) as db:
        for session in acknowledged:
            [run] = await db.list_agents(session_id=session)
            assert len(await db.list_prompts(agent_id=run["id"], limit=1000)) == 200
