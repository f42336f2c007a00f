"""Property-based API tests from /openapi.json: whatever schemathesis sends, no 5xx.

The server is a real ``orchestrator-db serve`` process on each engine, seeded with a few records
so that generated ids sometimes hit something; examples are bounded to keep the run short.
(Each operation is driven with ``operation.as_strategy()`` and hypothesis directly, because
schemathesis' lazy pytest fixture does not run under pytest 9.)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import httpx
import pytest
import schemathesis
from apihelpers import Server
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

MAX_EXAMPLES = 12  # per operation and mode (valid / invalid data); ~10 s per engine here


@pytest.fixture(params=["sqlite", "postgresql"])
def api_schema(request: pytest.FixtureRequest, servers: Callable[..., Server]
               ) -> Iterator[schemathesis.BaseSchema]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    server = servers(url)
    with httpx.Client(base_url=server.http) as client:
        oa = client.post("/api/orchestrator-agents", json={"name": "seed"}).json()
        agent = client.post("/api/agents", json={"orchestrator_agent_id": oa["id"],
                                                 "session_id": "seed"}).json()
        client.post("/api/prompts", json={"agent_id": agent["id"], "content": "c"})
        client.post("/api/agent-logs", json={"agent_id": agent["id"], "message": "m"})
    yield schemathesis.openapi.from_url(f"{server.http}/openapi.json")


def test_no_server_errors(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25
    statuses: dict[int, int] = {}

    for operation, mode in itertools.product(operations, list(GenerationMode)):
        @given(case=operation.as_strategy(mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call(timeout=30)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300} -> "
                f"{response.status_code}: {response.text[:500]}"
            )
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"type", "message", "field"}

        try:
            check()
        except Unsatisfiable:
            # No invalid input exists for an operation without parameters or body.
            assert mode is GenerationMode.NEGATIVE, operation.label
    # The run reached the endpoints and got both successes and refusals back.
    assert sum(statuses.values()) >= len(operations) * 2
    assert any(200 <= code < 300 for code in statuses), statuses
    assert any(400 <= code < 500 for code in statuses), statuses
