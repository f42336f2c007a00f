"""Fixtures for the service tests: an in-process app and client, real uvicorn servers.

In-process tests drive the app through ``httpx.ASGITransport`` inside the app's own lifespan
(``app.router.lifespan_context``), so the DatabaseManager and the ChangeFeed are the real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from apihelpers import Server, start_server


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    """A factory of real servers, all stopped after the test."""
    started: list[Server] = []

    def start(url: str, **kwargs: Any) -> Server:
        server = start_server(url, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
