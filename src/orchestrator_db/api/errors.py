"""Every error the service returns has one JSON shape: ``{"error": {type, message, field}}``.

One handler maps the library's exception tree to HTTP codes by walking the exception's class
hierarchy, so a new subclass inherits its parent's code:

    ValidationError               400  (a malformed id, status, cursor, filter or field value)
    NotFoundError                 404  (also: a missing id on get/update/delete)
    ConstraintError and children  409  (DuplicateError, ReferencedError, and ForeignKeyError:
                                        a parent named by the payload does not exist, which is a
                                        conflict with the database's current state, not a
                                        malformed payload)
    NotConnectedError             503
    UnavailableError              503 (with Retry-After)
    any other OrchestratorDBError 500

FastAPI's own request validation becomes 422 for a body that does not match its schema (an
unknown field, a wrong type) and 400 for a bad query or path parameter, in the same shape.
Oversized bodies are 413 and missing/wrong tokens 401 (see ``security``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..errors import (
    ConstraintError,
    NotConnectedError,
    NotFoundError,
    OrchestratorDBError,
    UnavailableError,
    ValidationError,
)

logger = logging.getLogger("orchestrator_db.api")

STATUS_BY_ERROR: dict[type[OrchestratorDBError], int] = {
    ValidationError: 400,
    NotFoundError: 404,
    ConstraintError: 409,
    NotConnectedError: 503,
    UnavailableError: 503,
    OrchestratorDBError: 500,
}

HTTP_TYPES = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFoundError",
    405: "MethodNotAllowed", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
}


def error_body(type_: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {"error": {"type": type_, "message": message, "field": field}}


def error_response(status: int, type_: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response in the one shape."""
    return JSONResponse(error_body(type_, message, field), status_code=status, headers=headers)


def status_for(exc: OrchestratorDBError) -> int:
    """The HTTP status of a library error: the entry of its nearest class in the tree."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


async def handle_library_error(request: Request, exc: Exception) -> JSONResponse:
    """The one handler of the library's exception tree."""
    assert isinstance(exc, OrchestratorDBError)
    status = status_for(exc)
    if status >= 500:
        logger.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path,
                     exc, exc_info=exc)
    headers = {"Retry-After": "5"} if isinstance(exc, UnavailableError) else None
    return error_response(status, type(exc).__name__, exc.message, exc.field, headers=headers)


def _loc_field(loc: tuple[Any, ...]) -> str | None:
    # ("body", "status") -> "status"; ("query", "limit") -> "limit"; ("body",) -> None
    parts = [str(p) for p in loc[1:]]
    return ".".join(parts) or None


async def handle_request_validation(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's request validation: 422 for the body, 400 for query/path parameters."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    loc = tuple(first.get("loc", ()))
    field = _loc_field(loc)
    if first.get("type") == "extra_forbidden":
        message = f"unknown field {field!r}"
    elif first.get("type") == "json_invalid":
        field = None
        message = "request body is not valid JSON"
    else:
        where = field or (str(loc[0]) if loc else "request")
        message = f"{where}: {first.get('msg', 'invalid')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    status = 422 if loc and loc[0] == "body" else 400
    return error_response(status, "ValidationError", message, field)


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's HTTP errors (unknown route, wrong method) in the same shape."""
    assert isinstance(exc, StarletteHTTPException)
    type_ = HTTP_TYPES.get(exc.status_code, "HTTPError")
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() != "allow"}
    if exc.status_code == 405:
        # Starlette names the methods of the first route with this path only; a path served by
        # several routes (GET and PATCH of one record) takes all of theirs.
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return error_response(exc.status_code, type_, str(exc.detail), None, headers=headers or None)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    scope = {**request.scope, "method": "GET"}
    for route in _routes(request.app.router.routes):
        if isinstance(getattr(route, "methods", None), set):
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                methods |= route.methods
    return sorted(methods)


def _routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every route, also those of included routers (FastAPI keeps them as nested nodes)."""
    for route in routes:
        inner = getattr(route, "routes", None)
        if inner is None and hasattr(route, "original_router"):
            inner = route.original_router.routes
        if inner:
            yield from _routes(inner)
        else:
            yield route


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A bug: log it, answer 500 in the same shape without internals."""
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "InternalError", "internal server error; see the server log")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(OrchestratorDBError, handle_library_error)
    app.add_exception_handler(RequestValidationError, handle_request_validation)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(Exception, handle_unexpected)
