"""HEAD is answered as GET without its body, through a real uvicorn server (it was a 405 on
every API route, so `curl -I` and monitors probing /healthz with HEAD saw an error)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from apihelpers import Server


def test_head_answers_as_get_without_the_body(sqlite_url: str,
                                              servers: Callable[..., Server]) -> None:
    server = servers(sqlite_url)
    with httpx.Client(base_url=server.http, timeout=30) as client:
        for path in ("/healthz", "/api/agents", "/api/sessions?limit=1", "/", "/api/stats"):
            got = client.get(path)
            head = client.head(path)
            assert head.status_code == got.status_code == 200, path
            assert head.content == b"", path
            assert head.headers["content-type"] == got.headers["content-type"], path
        # What GET refuses, HEAD refuses alike (the same status, no body).
        assert client.head("/api/agents?colour=red").status_code == 400
        assert client.head("/api/agents/not-an-id").status_code == \
            client.get("/api/agents/not-an-id").status_code
        assert client.post("/api/system-logs", json={"message": "m"}).status_code == 201
