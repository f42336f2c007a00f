"""QueryModelRoute answers exactly what FastAPI's own handling of the same route answers.

Each list route is called both ways with the same request: through its fast handler and through
``APIRoute.get_route_handler`` (FastAPI's, for the same declaration): the same body, or the same
validation errors, for good and bad query strings.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request

from orchestrator_db.api import routes
from orchestrator_db.api.listroute import QueryModelRoute
from orchestrator_db.errors import ValidationError

QUERIES = [
    "", "limit=3", "limit=3&order=desc", "limit=0", "limit=abc", "limit=1001", "order=up",
    "cursor=%00", "since=yesterday", "since=2026-01-01T00:00:00Z&until=2027-01-01",
    "limit=2&limit=5", "min_level=error", "min_level=LOUD", "agent_id=" + "x" * 101,
    "log_level=INFO&session_id=s", "status=bogus", "token=abc&limit=1", "nope=1",
]
LISTS = ["/api/agent-logs", "/api/system-logs", "/api/prompts", "/api/agents",
         "/api/orchestrator-agents"]


def _route(path: str) -> APIRoute:
    return next(r for r in routes.router.routes
                if isinstance(r, APIRoute) and r.path == path and "GET" in r.methods)


async def _answer(handler: Any, app: FastAPI, route: APIRoute, query: str) -> Any:
    scope = {"type": "http", "method": "GET", "path": route.path, "raw_path": route.path.encode(),
             "query_string": query.encode(), "headers": [], "app": app, "route": route,
             "root_path": ""}
    async with AsyncExitStack() as stack:
        scope["fastapi_inner_astack"] = stack
        scope["fastapi_function_astack"] = stack
        scope["fastapi_middleware_astack"] = stack
        try:
            response = await handler(Request(scope))
        except RequestValidationError as exc:
            return ("invalid", [(e["loc"], e["type"], e["msg"]) for e in exc.errors()])
        except ValidationError as exc:
            return ("refused", str(exc), exc.field)
    return ("ok", response.status_code, bytes(response.body))


def test_list_routes_take_the_fast_path() -> None:
    for path in LISTS:
        route = _route(path)
        assert isinstance(route, QueryModelRoute)
        handler = route.get_route_handler()
        assert handler.__qualname__.startswith("QueryModelRoute.")
    # A route of another shape (a body, a path parameter) is FastAPI's.
    post = next(r for r in routes.router.routes if isinstance(r, APIRoute)
                and r.path == "/api/agent-logs" and "POST" in r.methods)
    assert not post.get_route_handler().__qualname__.startswith("QueryModelRoute.")


@pytest.mark.parametrize("path", LISTS)
async def test_same_answers_as_fastapi(app: FastAPI, path: str) -> None:
    db = app.state.db
    oa = await db.create_orchestrator_agent("o")
    agent = await db.create_agent(oa, "s")
    for i in range(4):
        await db.create_agent_log(agent, f"l{i}")
        await db.create_system_log(f"s{i}")
        await db.create_prompt(agent, f"p{i}")
    route = _route(path)
    fast, standard = route.get_route_handler(), APIRoute.get_route_handler(route)
    for query in QUERIES:
        assert await _answer(fast, app, route, query) == await _answer(
            standard, app, route, query), query
