"""``QueryModelRoute``: a GET route taking one query model, validated in one pydantic call.

FastAPI extracts a query model field by field, inspecting each field's annotation on every
request: ~160 µs for the eleven filters of ``/api/agent-logs``, more than the SQLite query of a
100-row page (benchmarks/bench_api.py), where ``Model.model_validate`` of the query string takes
~8 µs. A route of this class is declared as usual (``q: Annotated[Model, Query()]``), so its
parameters, /openapi.json and the check for unknown parameters stay as they are; it answers
through the fast path when its shape is the simple one of the list routes:

- a coroutine taking one query model and dependencies that each take only the ``Request``
  (``get_db``, the router's ``refuse_unknown_query``), nothing else (no path, header, cookie or
  body parameter);
- annotated to return a ``Response`` (the route renders its own body: nothing to serialise).

Any other route of the router is handled by FastAPI as usual. A value the model refuses is the
same ``RequestValidationError`` (``loc`` ``("query", field)``) FastAPI raises, so errors keep
their 400 body.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic
from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _takes_only_request(dependant: Dependant) -> bool:
    return (dependant.request_param_name is not None and inspect.iscoroutinefunction(
        dependant.call) and not (
        dependant.path_params or dependant.query_params or dependant.header_params
        or dependant.cookie_params or dependant.body_params or dependant.dependencies
        or dependant.websocket_param_name or dependant.http_connection_param_name
        or dependant.response_param_name or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name))


def _query_model(dependant: Dependant) -> tuple[str, type[pydantic.BaseModel]] | None:
    """The (parameter name, model) of a route shaped for the fast path, else None."""
    if (dependant.path_params or dependant.header_params or dependant.cookie_params
            or dependant.body_params or len(dependant.query_params) != 1
            or dependant.request_param_name or dependant.websocket_param_name
            or dependant.http_connection_param_name or dependant.response_param_name
            or dependant.background_tasks_param_name or dependant.security_scopes_param_name
            or not inspect.iscoroutinefunction(dependant.call)):
        return None
    [param] = dependant.query_params
    model = param.field_info.annotation
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        return None
    if not all(_takes_only_request(sub) for sub in dependant.dependencies):
        return None
    return param.name, model


class QueryModelRoute(APIRoute):
    """An ``APIRoute`` that validates its query model in one call when it can (module doc)."""

    def get_route_handler(self) -> Handler:
        found = _query_model(self.dependant)
        returns = getattr(self.endpoint, "__annotations__", {}).get("return")
        if found is None or returns not in ("Response", Response):
            return super().get_route_handler()
        name, model = found
        endpoint = self.dependant.call
        dependencies: list[tuple[str | None, Callable[..., Any], str]] = []
        for sub in self.dependant.dependencies:  # _takes_only_request: call, request param
            assert sub.call is not None and sub.request_param_name is not None
            dependencies.append((sub.name, sub.call, sub.request_param_name))
        assert endpoint is not None

        async def handler(request: Request) -> Response:
            values: dict[str, Any] = {}
            for bound, call, request_name in dependencies:  # in the declared order
                value = await call(**{request_name: request})
                if bound is not None:
                    values[bound] = value
            try:
                values[name] = model.model_validate(dict(request.query_params))
            except pydantic.ValidationError as exc:
                raise RequestValidationError(
                    [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
                ) from None
            response: Response = await endpoint(**values)
            return response

        return handler


__all__ = ["QueryModelRoute"]
