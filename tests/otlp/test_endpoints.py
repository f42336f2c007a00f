"""POST /v1/traces and /v1/logs: encodings, responses, refusals, backpressure, the token."""

from __future__ import annotations

import gzip
import json
import zlib

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from otlphelpers import (
    CHAT,
    PROTOBUF,
    agent_attrs,
    log,
    logs,
    new_span,
    new_trace,
    otlp_json,
    partial_success,
    send,
    span,
    traces,
)

from orchestrator_db import DatabaseManager
from orchestrator_db.api import create_app


def _request() -> tuple[bytes, object]:
    trace, agent, chat = new_trace(), new_span(), new_span()
    return trace, traces([span(trace, agent, "invoke_agent planner", attrs=agent_attrs("planner")),
                          span(trace, chat, "chat gpt-4o", parent=agent, attrs=CHAT)])


@pytest.mark.parametrize("as_json", [False, True], ids=["protobuf", "json"])
@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
async def test_encodings_are_answered_in_kind(client: httpx.AsyncClient, manager: DatabaseManager,
                                              as_json: bool, gzipped: bool) -> None:
    trace, request = _request()
    response = await send(client, request, as_json=as_json, gzipped=gzipped)
    expected = "application/json" if as_json else PROTOBUF
    assert response.headers["content-type"].startswith(expected)
    assert partial_success(response) == (0, "")
    agents = await manager.list_agents(session_id=trace.hex())
    assert [a["name"] for a in agents] == ["planner"]
    assert len(await manager.list_prompts(agent_id=agents[0]["id"])) == 1


async def test_json_response_names_partial_success(client: httpx.AsyncClient) -> None:
    _, request = _request()
    response = await send(client, request, as_json=True)
    assert response.json() == {"partialSuccess": {"rejectedSpans": 0}}
    response = await send(client, logs([log("hello")]), as_json=True)
    assert response.json() == {"partialSuccess": {"rejectedLogRecords": 0}}


async def test_spans_without_ids_are_rejected_in_partial_success(
        client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    trace, request = _request()
    request.resource_spans[0].scope_spans[0].spans.append(span(b"", new_span(), "no trace id"))
    rejected, message = partial_success(await send(client, request))
    assert rejected == 1 and "trace_id" in message
    assert len(await manager.list_agents(session_id=trace.hex())) == 1


@pytest.mark.parametrize("as_json", [False, True], ids=["protobuf", "json"])
async def test_bad_ids_are_judged_per_span_in_either_encoding(
        client: httpx.AsyncClient, manager: DatabaseManager, as_json: bool) -> None:
    # A JSON batch was refused whole (400, which exporters do not retry) for one span's id of
    # the wrong size, where protobuf stored the rest: both now store the good spans, reject the
    # span without usable ids and ignore a malformed parent link.
    trace, request = _request()
    spans = request.resource_spans[0].scope_spans[0].spans
    spans.append(span(trace, b"\x01" * 4, "short span id"))
    spans.append(span(b"\x02" * 8, new_span(), "short trace id"))
    spans.append(span(trace, new_span(), "odd parent", parent=b"\x03" * 9))
    assert partial_success(await send(client, request, as_json=as_json))[0] == 2
    # The span with the odd parent is a root: under the trace's implicit agent.
    agents = await manager.list_agents(session_id=trace.hex())
    assert sorted(a["name"] for a in agents) == ["planner", "test-service"]
    rows = await manager.store.fetch("SELECT span_id, parent_span_id, orphan FROM otlp_spans")
    odd = [(r["parent_span_id"], bool(r["orphan"])) for r in rows
           if r["span_id"] == spans[-1].span_id.hex()]
    assert odd == [(None, False)]


async def test_json_ids_that_spell_no_bytes_reject_only_their_span(
        client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    trace, request = _request()
    document = json.loads(otlp_json(request))
    document["resourceSpans"][0]["scopeSpans"][0]["spans"].append(
        {"traceId": "zz" * 16, "spanId": "00" * 8, "name": "x"})
    response = await client.post("/v1/traces", content=json.dumps(document),
                                  headers={"content-type": "application/json"})
    rejected, message = partial_success(response)
    assert rejected == 1 and "trace_id" in message
    assert len(await manager.list_agents(session_id=trace.hex())) == 1


async def test_gzip_members_are_all_read_and_trailing_bytes_refused(
        client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    trace, request = _request()
    body = request.SerializeToString()
    half = len(body) // 2  # protobuf messages concatenate: two members give the whole request
    headers = {"content-type": PROTOBUF, "content-encoding": "gzip"}
    two_members = gzip.compress(body[:half]) + gzip.compress(body[half:]) + b"\0" * 4
    assert partial_success(await client.post("/v1/traces", content=two_members,
                                              headers=headers)) == (0, "")
    assert len(await manager.list_agents(session_id=trace.hex())) == 1
    response = await client.post("/v1/traces", content=gzip.compress(body) + b"junk",
                                  headers=headers)
    assert response.status_code == 400
    assert "4 bytes after its gzip data" in response.json()["error"]["message"]


async def test_a_body_of_many_gzip_members_is_refused_in_linear_time(
        client: httpx.AsyncClient, manager: DatabaseManager) -> None:
    # 20,000 empty members (400 KB): inflating them one after another copied the rest of the
    # body each time (a 4 MB body held the server's CPU for half a minute).
    headers = {"content-type": PROTOBUF, "content-encoding": "gzip"}
    response = await client.post("/v1/traces", headers=headers,
                                 content=gzip.compress(b"", mtime=0) * 20_000)
    assert response.status_code == 400
    assert "more than 1000 gzip members" in response.json()["error"]["message"]
    trace, request = _request()  # a request cut in 1,000 members is still read whole
    body = request.SerializeToString()
    step = -(-len(body) // 1000)
    members = b"".join(gzip.compress(body[i:i + step]) for i in range(0, len(body), step))
    assert partial_success(await client.post("/v1/traces", content=members,
                                              headers=headers)) == (0, "")
    assert len(await manager.list_agents(session_id=trace.hex())) == 1


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/grpc",
                                          "application/x-www-form-urlencoded"])
async def test_other_content_types_are_415(client: httpx.AsyncClient,
                                           content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/v1/traces", content=b"{}", headers=headers)
    assert response.status_code == 415
    assert response.json()["error"]["type"] == "UnsupportedMediaType"


async def test_unknown_content_encoding_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/logs", content=zlib.compress(b"x"), headers={
        "content-type": PROTOBUF, "content-encoding": "br"})
    assert response.status_code == 415


@pytest.mark.parametrize(("content_type", "body", "encoding"), [
    (PROTOBUF, b"\xff\xff\xff\xff garbage", None),
    ("application/json", b"{not json", None),
    ("application/json", b"[1, 2]", None),
    ("application/json", json.dumps({"resourceSpans": "no"}).encode(), None),
    ("application/json", json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "ab" * 16, "spanId": "cd" * 8, "startTimeUnixNano": "soon"}]}]}]}).encode(),
     None),
    (PROTOBUF, b"not gzip at all", "gzip"),
    (PROTOBUF, gzip.compress(b"\x0a\x02")[:-6], "gzip"),
])
async def test_bodies_that_do_not_parse_are_400(client: httpx.AsyncClient, content_type: str,
                                               body: bytes, encoding: str | None) -> None:
    headers = {"content-type": content_type}
    if encoding:
        headers["content-encoding"] = encoding
    response = await client.post("/v1/traces", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "BadRequest"


async def test_gzip_bomb_is_refused(client: httpx.AsyncClient) -> None:
    bomb = gzip.compress(b"\0" * (80 * 1024 * 1024), compresslevel=9)
    response = await client.post("/v1/traces", content=bomb, headers={
        "content-type": PROTOBUF, "content-encoding": "gzip"})
    assert response.status_code == 400
    assert "expands" in response.json()["error"]["message"]


async def test_an_empty_request_is_fine(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/traces", content=b"", headers={"content-type": PROTOBUF})
    assert partial_success(response) == (0, "")
    response = await client.post("/v1/logs", content=b"{}",
                                  headers={"content-type": "application/json"})
    assert partial_success(response, "logs") == (0, "")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), as_json=st.booleans())
async def test_random_bodies_never_get_a_500(client: httpx.AsyncClient, body: bytes,
                                             as_json: bool) -> None:
    content_type = "application/json" if as_json else PROTOBUF
    for path in ("/v1/traces", "/v1/logs"):
        response = await client.post(path, content=body, headers={"content-type": content_type})
        assert response.status_code in (200, 400), response.text


async def test_full_queue_answers_429_with_retry_after(app: FastAPI,
                                                       client: httpx.AsyncClient) -> None:
    receiver = app.state.otlp
    receiver.max_pending = 0
    try:
        response = await send(client, _request()[1])
    finally:
        receiver.max_pending = 50_000
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "Busy"
    assert "items are waiting to be written" in response.json()["error"]["message"]
    assert partial_success(await send(client, _request()[1])) == (0, "")


async def test_too_many_requests_decoding_at_once_say_so(client: httpx.AsyncClient,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Not the queue: the number of bodies being decoded at once (each may be 64 MiB).
    monkeypatch.setattr("orchestrator_db.otlp.receiver.MAX_DECODING", 0)
    response = await send(client, _request()[1])
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["message"] == (
        "0 export requests are being decoded already (the most at once); retry shortly")


async def test_stopped_receiver_answers_503_with_retry_after(app: FastAPI,
                                                             client: httpx.AsyncClient) -> None:
    await app.state.otlp.stop()
    response = await send(client, _request()[1])
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0


async def test_database_failure_is_503_not_500(app: FastAPI, client: httpx.AsyncClient,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(app.state.otlp.storage, "links", broken)
    response = await send(client, _request()[1])
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert app.state.otlp.status()["failures"] == 1
    monkeypatch.undo()
    assert partial_success(await send(client, _request()[1])) == (0, "")


async def test_large_batches_fit_the_otlp_body_limit(client: httpx.AsyncClient) -> None:
    trace = new_trace()
    big = {**CHAT, "gen_ai.input.messages": "x" * 3_000_000}
    response = await send(client, traces([span(trace, new_span(), "chat", attrs=big)]))
    assert partial_success(response) == (0, "")
    response = await client.post("/api/stats", content=b"x" * 2_000_000,
                                 headers={"content-type": "application/json"})
    assert response.status_code == 413  # the rest of the API keeps its limit


async def test_token_applies_to_otlp(db_url: str) -> None:
    app = create_app(db_url, token="s3cret-token")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            response = await send(c, _request()[1])
            assert response.status_code == 401
            response = await send(c, _request()[1],
                                  headers={"authorization": "Bearer s3cret-token"})
            assert partial_success(response) == (0, "")


async def test_a_bug_in_decoding_is_503_not_500(client: httpx.AsyncClient,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("orchestrator_db.otlp.receiver.decode", broken)
    response = await send(client, _request()[1])
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


async def test_healthz_reports_the_receiver(client: httpx.AsyncClient) -> None:
    assert partial_success(await send(client, _request()[1])) == (0, "")
    otlp = (await client.get("/healthz")).json()["otlp"]
    assert otlp["running"] and otlp["pending"] == 0
    assert otlp["items"] == 2 and otlp["batches"] == 1 and otlp["failures"] == 0
