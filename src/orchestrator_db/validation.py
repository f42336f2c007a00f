"""Argument checks shared by the manager and the modules built on it.

Each raises ``orchestrator_db.errors.ValidationError`` naming the field and, where there is a
closed set, the allowed values.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import pydantic

from .errors import ValidationError, shown
from .models import (
    LOG_LEVELS,
    MAX_CONTENT_CHARS,
    NO_NUL,
    UNPAIRED_SURROGATE,
    TimeRangeError,
    parse_ts,
    storable_ts,
    text_problem,
)

M = TypeVar("M", bound=pydantic.BaseModel)


def validation_error(exc: pydantic.ValidationError, model: type[pydantic.BaseModel]
                      ) -> ValidationError:
    err = exc.errors()[0]
    field = ".".join(str(part) for part in err["loc"]) or None
    top = str(err["loc"][0]) if err["loc"] else None
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(model.model_fields))
        message = f"unknown field {top!r}; allowed fields: {allowed}"
    elif err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == NO_NUL:
        message = f"{field}: must not contain NUL characters"
    elif err["type"] == "string_unicode":  # what pydantic says of a lone surrogate
        message = f"{field}: {UNPAIRED_SURROGATE}"
    else:
        message = f"{field}: {err['msg'].removeprefix('Value error, ')} (got {shown(err.get('input'))})"
    return ValidationError(message, field=top)


def validate(model: type[M], data: Mapping[str, Any]) -> M:
    """Validate ``data`` with a payload model, raising our ValidationError naming the field."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise validation_error(exc, model) from exc


# The form every id is stored and returned in (lowercase, hyphenated): taken as it is.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_uuid(value: Any, field: str) -> str:
    """Return ``value`` as a canonical UUID string, or raise ValidationError naming ``field``."""
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):  # ids we returned: no parsing
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise ValidationError(f"{field} must be a UUID string, got {shown(value, 60)}", field=field)


def check_text(value: Any, field: str, *, max_chars: int = MAX_CONTENT_CHARS) -> str:
    """Return a text argument (a filter value, a name) that a stored value could equal.

    Whole numbers are taken as their decimal text. NUL and lone surrogates are refused on both
    engines: no stored text holds them (PostgreSQL cannot, and every write path refuses them).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            value = str(value)
        except ValueError:  # more digits than sys.get_int_max_str_digits()
            raise ValidationError(f"{field} is a whole number too long to be text",
                                  field=field) from None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {type(value).__name__}",
                              field=field)
    problem = text_problem(value)
    if problem is None and len(value) > max_chars:
        problem = f"is longer than {max_chars:,} characters"
    if problem is not None:
        raise ValidationError(f"{field} {problem}", field=field)
    return value


def check_choice(value: Any, allowed: Iterable[str], field: str) -> str:
    """Return ``value`` if it is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValidationError(
            f"{field} must be one of {', '.join(allowed)}; got {shown(value)}", field=field
        )
    return str(value)


def check_time(value: Any, field: str, *, stored: bool = False) -> datetime | None:
    """Parse an optional caller timestamp (datetime or ISO 8601 string); ``stored``: a time to
    be written, which must also be one both engines store as it is (``storable_ts``)."""
    if value is None:
        return None
    try:
        return storable_ts(value) if stored else parse_ts(value)
    except (ValueError, TypeError) as exc:
        reason = (str(exc) if isinstance(exc, TimeRangeError)
                  else "is not a datetime or an ISO 8601 string")
        raise ValidationError(
            f"{field} must be a datetime or an ISO 8601 string, got {shown(value)} ({reason})",
            field=field,
        ) from exc


def check_level(value: Any, field: str) -> str:
    """Return a log level in upper case, or raise ValidationError."""
    level = value.upper() if isinstance(value, str) else value
    return check_choice(level, LOG_LEVELS, field)


def short(row_id: str) -> str:
    """Return the start of an id, for messages."""
    return row_id[:8] + "…"
