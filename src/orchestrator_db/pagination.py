"""Keyset pagination: an opaque cursor over the stable order (created_at, id)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypedDict

import orjson

from .errors import ValidationError, shown
from .models import parse_ts
from .validation import check_uuid

Order = Literal["asc", "desc"]
DEFAULT_LIMIT = 100


class Paging(TypedDict, total=False):
    """The paging keywords of every ``page_*`` method (each optional).

    ``limit`` rows (default 100, at most 1000); ``cursor``: the ``next_cursor`` of the page
    before; ``order``: ``"asc"`` (oldest first, the default) or ``"desc"``; ``offset``: rows to
    skip (slow on deep pages: prefer the cursor).
    """

    limit: int
    cursor: str | None
    order: Order
    offset: int | None
MAX_LIMIT = 1000


@dataclass
class Page:
    """One page of a list: its rows, and the cursor of the next page (None on the last)."""

    items: list[dict[str, Any]]
    next_cursor: str | None = None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


MALFORMED_CURSOR = "cursor is malformed: pass back the next_cursor of a previous page unchanged"
# What reading a cursor that is not one of ours can raise, before it is a ValidationError.
CURSOR_ERRORS = (binascii.Error, ValueError, TypeError, UnicodeDecodeError, AttributeError,
                 RecursionError)


def pack_cursor(values: list[Any]) -> str:
    """Return the opaque form of a cursor's values (unpadded base64url of compact JSON)."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def unpack_cursor(cursor: str) -> Any:
    """Return the values ``pack_cursor`` packed; raises one of CURSOR_ERRORS if it cannot."""
    if not isinstance(cursor, str):
        raise TypeError(f"a cursor is a string, got {type(cursor).__name__}")
    padded = cursor + "=" * (-len(cursor) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode()))


def encode_cursor(row: dict[str, Any], order: Order) -> str:
    """Return the cursor that continues after ``row``."""
    return pack_cursor([row["created_at"], row["id"], order])


def decode_cursor(cursor: str, order: Order) -> tuple[datetime, str]:
    """Return the (created_at, id) position a cursor names; ValidationError if it is not ours."""
    try:
        created_at, row_id, cursor_order = unpack_cursor(cursor)
        position = parse_ts(created_at), check_uuid(row_id, "cursor")
    except (*CURSOR_ERRORS, ValidationError) as exc:
        raise ValidationError(MALFORMED_CURSOR, field="cursor") from exc
    if cursor_order != order:
        raise ValidationError(
            f"cursor was made for order={shown(cursor_order)} but this call asks for "
            f"order={order!r}",
            field="cursor",
        )
    return position


def check_limit(limit: Any, maximum: int = MAX_LIMIT) -> int:
    """Return ``limit`` if it is a whole number from 1 to ``maximum``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise ValidationError(
            f"limit must be a whole number from 1 to {maximum}, got {shown(limit)}", field="limit"
        )
    return limit


def check_order(order: Any) -> Order:
    """Return ``order`` if it is 'asc' or 'desc'."""
    if order not in ("asc", "desc"):
        raise ValidationError(f"order must be 'asc' or 'desc', got {shown(order)}", field="order")
    return order  # type: ignore[no-any-return]
