"""Turning stdlib log records into rows: levels, text and details made storable, ids checked.

Text from outside (messages, ``extra=`` values, exception text) is kept rather than refused:
cleaned with the same checks every write path applies (``clean_text``, ``encode_json``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import uuid
from datetime import UTC, datetime
from typing import Any

from ..errors import (
    ConstraintError,
    NotConnectedError,
    OrchestratorDBError,
    SchemaError,
    ValidationError,
    shown,
)
from ..jsoncodec import JsonText
from ..models import MAX_MESSAGE_CHARS, MAX_SHORT_CHARS, clean_text, encode_json, utc_now


def level_name(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return "CRITICAL"
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARNING"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG"


def json_safe(value: Any) -> Any:
    """Return ``value`` as plain JSON data whose text can be stored (else its repr, cleaned)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):  # one past ~4,300 digits cannot even be turned into text
        return value if value.bit_length() < 10_000 else shown(value)
    if isinstance(value, str):
        return clean_text(value, MAX_MESSAGE_CHARS)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    try:
        return clean_json(json.loads(json.dumps(value, default=shown, allow_nan=False)))
    except Exception:  # noqa: BLE001 - a value that is no JSON at all is kept as its repr
        return clean_text(shown(value, MAX_SHORT_CHARS), MAX_SHORT_CHARS)


def record_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - arguments that do not fit the format: keep both as text
        return f"{shown(record.msg, MAX_MESSAGE_CHARS)} % {shown(record.args, MAX_SHORT_CHARS)}"


def clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value, MAX_MESSAGE_CHARS)
    if isinstance(value, dict):
        return {clean_text(k, MAX_SHORT_CHARS): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value


def stored_details(details: Any) -> Any:
    """Encode details as every write path does (encode_json), or say why they were dropped."""
    if details is None or isinstance(details, JsonText):
        return details
    try:
        if (isinstance(details, dict) and len(details) == 1
                and isinstance(logger := details.get("logger"), str)):
            return _logger_only(logger)  # most records: no extras, only the logger's name
        return encode_json(details)
    except ValueError as exc:
        return encode_json({"details_dropped": str(exc), "keys": sorted(details)[:50]})


@functools.lru_cache(maxsize=1024)  # a process has few loggers
def _logger_only(logger: str) -> Any:
    return encode_json({"logger": logger})


def created_at_of(timestamp: float) -> datetime:
    try:
        return datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):  # a record with a made-up time
        return utc_now()


def is_transient(exc: BaseException) -> bool:
    """Whether writing the same rows again may succeed (a lock, a lost connection)."""
    if isinstance(exc, ValidationError | ConstraintError | SchemaError | NotConnectedError):
        return False
    return isinstance(exc, OrchestratorDBError | OSError)


@functools.lru_cache(maxsize=4096)  # a process logs for few agents, record after record
def canonical_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None
