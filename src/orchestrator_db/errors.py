"""The exceptions orchestrator-db raises, the same on SQLite and PostgreSQL.

    OrchestratorDBError
    ├── NotFoundError
    ├── ValidationError
    ├── ConstraintError
    │   ├── ForeignKeyError
    │   ├── DuplicateError
    │   └── ReferencedError
    ├── SchemaError
    │   └── SchemaNotFoundError   (also a FileNotFoundError)
    ├── NotConnectedError
    └── UnavailableError

The driver's exception, when there is one, is chained as ``__cause__``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class OrchestratorDBError(Exception):
    """Base class of every error raised by orchestrator-db."""

    def __init__(self, message: str, *, field: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.context = context

    def __str__(self) -> str:
        return self.message


class NotFoundError(OrchestratorDBError):
    """A record that the call needs does not exist."""


class ValidationError(OrchestratorDBError, ValueError):
    """An argument is malformed or out of range; ``field`` names it."""


class ConstraintError(OrchestratorDBError):
    """The database refused a write because of a constraint."""


class ForeignKeyError(ConstraintError):
    """A parent record named by the call does not exist."""


class DuplicateError(ConstraintError):
    """A unique value (such as an orchestrator agent name) is already taken."""


class ReferencedError(ConstraintError):
    """A record cannot be deleted while other records still refer to it."""


class SchemaError(OrchestratorDBError):
    """The database schema is missing, corrupt or newer than this package."""


class SchemaNotFoundError(SchemaError, FileNotFoundError):
    """A schema file that the call needs does not exist."""


class NotConnectedError(OrchestratorDBError):
    """The manager is used before ``connect()`` or after ``close()``."""


class UnavailableError(OrchestratorDBError):
    """The database cannot serve the call now: the connection was lost or refused, the disk
    is full, or another process held the lock too long. Retrying later may succeed."""


__all__ = [
    "ConstraintError",
    "DuplicateError",
    "ForeignKeyError",
    "NotConnectedError",
    "NotFoundError",
    "OrchestratorDBError",
    "ReferencedError",
    "SchemaError",
    "SchemaNotFoundError",
    "UnavailableError",
    "ValidationError",
]


def shown(value: Any, limit: int = 80) -> str:
    """Return ``repr(value)`` cut to ``limit`` characters, for a message; never raises."""
    try:
        # A time as its ISO 8601 text: a query parameter arrives parsed, and its repr
        # (datetime.datetime(9999, 12, 31, ..., tzinfo=TzInfo(-3600))) is no form a caller wrote.
        text = repr(value.isoformat()) if isinstance(value, datetime) else repr(value)
    except Exception:  # a 5,000-digit int, JSON nested past the recursion limit, a broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def duplicate_message(table: str, columns: list[str]) -> str:
    """What a unique key refused, in the same words on both engines (no values: they can be
    long, or private)."""
    return f"duplicate value: {table} already holds a row with this {', '.join(columns)}"


def not_null_message(table: str, column: str) -> str:
    """What a NOT NULL column refused, in the same words on both engines."""
    return f"constraint failed: {table}.{column} must not be null"
