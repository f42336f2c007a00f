"""Unknown query parameters are refused: ``?level=ERROR`` where ``min_level`` is meant is a 400.

Ignoring one would answer as if no filter had been asked for (every level, every session), which
looks like a right answer. The error names the parameters the route takes. ``/ws/events`` refuses
them with the same error (ws.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Request
from pydantic import BaseModel

from ..errors import ValidationError

# Query parameters every route takes: the API token, for browsers (see security.py).
ALWAYS_KNOWN = frozenset({"token"})
_CACHE = "_orchestrator_db_known_query"  # kept on the route object, computed on first use


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route declares: plain ones, and the fields of query models."""
    names: set[str] = set()
    for param in dependant.query_params:
        kind = param.field_info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names.update(f.alias or name for name, f in kind.model_fields.items())
        else:
            names.add(param.alias)
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def unknown_parameter(names: Iterable[str], known: frozenset[str]) -> ValidationError | None:
    """The error for the first of ``names`` not in ``known`` (naming those), or None."""
    for name in names:
        if name not in known and name not in ALWAYS_KNOWN:
            listed = ", ".join(sorted(known - ALWAYS_KNOWN)) or "none"
            return ValidationError(f"unknown query parameter {name!r}; known: {listed}",
                                   field=name)
    return None


async def refuse_unknown_query(request: Request) -> None:
    """Refuse a query parameter the route does not take, naming those it does."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known: frozenset[str] | None = getattr(route, _CACHE, None)
    if known is None:
        known = frozenset(_query_names(dependant) | ALWAYS_KNOWN)
        setattr(route, _CACHE, known)
    error = unknown_parameter(request.query_params, known)
    if error is not None:
        raise error
