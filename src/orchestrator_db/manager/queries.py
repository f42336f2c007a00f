"""Query building: keyset pages, streaming, time ranges and level filters."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..errors import ValidationError, shown
from ..models import LOG_LEVEL_NUMBERS, LOG_LEVELS
from ..pagination import (
    DEFAULT_LIMIT,
    Order,
    Page,
    Paging,
    check_limit,
    check_order,
    decode_cursor,
    encode_cursor,
)
from ..store import Store
from ..tables import COLUMNS
from ..validation import check_choice, check_level, check_text, check_time, check_uuid
from .lifecycle import ManagerBase

ITER_PAGE = 1000
# Pages longer than this are read on the store's thread: a 1000-row page decoded on the event
# loop would hold up every other request for milliseconds.
HEAVY_PAGE = 100


class Where:
    """The conditions of one list query: each filter value checked, then passed as a parameter.

    A filter given as None is no condition. Column names are our own (tables.py); values only
    ever travel as driver parameters.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.q = store.query()
        self.conditions: list[str] = []

    def equals(self, column: str, value: Any, check: Callable[[Any, str], Any]) -> Where:
        """``column = value`` once ``check(value, column)`` accepts it."""
        if value is not None:
            self.conditions.append(f"{column} = {self.q.p(check(value, column))}")
        return self

    def text(self, column: str, value: Any) -> Where:
        """``column = value`` for text (no NUL, no lone surrogates)."""
        return self.equals(column, value, check_text)

    def uuid(self, column: str, value: Any) -> Where:
        """``column = value`` for an id."""
        return self.equals(column, value, check_uuid)

    def choice(self, column: str, value: Any, allowed: tuple[str, ...]) -> Where:
        """``column = value`` for one of a closed set of values."""
        return self.equals(column, value, lambda v, field: check_choice(v, allowed, field))

    def in_session(self, session_id: Any) -> Where:
        """Rows whose agent belongs to the session."""
        if session_id is not None:
            session = self.q.p(check_text(session_id, "session_id"))
            self.conditions.append(
                f"agent_id IN (SELECT id FROM agents WHERE session_id = {session})")
        return self

    def levels(self, log_level: Any, min_level: Any) -> Where:
        """One log level, and/or that level and above."""
        self.equals("log_level", log_level, check_level)
        if min_level is not None:
            floor = LOG_LEVEL_NUMBERS[check_level(min_level, "min_level")]
            levels = [lvl for lvl in LOG_LEVELS if LOG_LEVEL_NUMBERS[lvl] >= floor]
            self.conditions.append(f"log_level IN ({', '.join(self.q.p(lvl) for lvl in levels)})")
        return self

    def created(self, since: Any, until: Any) -> Where:
        """Rows created in [since, until)."""
        start, end = check_time(since, "since"), check_time(until, "until")
        if start is not None:
            self.conditions.append(f"created_at >= {self.q.p(self.store.ts(start))}")
        if end is not None:
            self.conditions.append(f"created_at < {self.q.p(self.store.ts(end))}")
        return self


def lister(page: str, what: str) -> Callable[..., Awaitable[list[dict[str, Any]]]]:
    """A ``list_*`` method: the items of ``page(**filters)``, the method named ``page``."""
    async def list_(self: QueryBuilder, *args: Any, **filters: Any) -> list[dict[str, Any]]:
        return (await getattr(self, page)(*args, **filters)).items  # type: ignore[no-any-return]

    list_.__doc__ = f"Return {what} (filters and paging as ``{page}``)."
    return list_


def streamer(page: str, what: str) -> Callable[..., AsyncIterator[dict[str, Any]]]:
    """An ``iter_*`` method: every row of ``page(**filters)``, page after page."""
    def iter_(self: QueryBuilder, *args: Any, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        return self._iter(getattr(self, page), args, filters)

    iter_.__doc__ = f"Stream every {what} matching the filters."
    return iter_


class QueryBuilder(ManagerBase):
    """Pages and filters, in one shape for every record kind."""

    def _where(self) -> Where:
        return Where(self.store)

    async def _page(
        self,
        table: str,
        where: Where,
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        order: Order = "asc",
        offset: int | None = None,
        **unknown: Any,
    ) -> Page:
        if unknown:  # names the page_* method does not take land in its **paging
            method = f"page_{table}"
            takes = [name for name in inspect.signature(getattr(self, method)).parameters
                     if name != "paging"] + list(Paging.__annotations__)
            raise ValidationError(
                f"{method}() got unknown argument(s) {', '.join(map(repr, sorted(unknown)))}; "
                f"it takes {', '.join(takes)}", field=sorted(unknown)[0])
        store = self.store
        limit = check_limit(limit)
        order = check_order(order)
        q, conditions = where.q, list(where.conditions)
        if cursor is not None:
            if not isinstance(cursor, str):
                raise ValidationError("cursor must be a string", field="cursor")
            created_at, row_id = decode_cursor(cursor, order)
            op = ">" if order == "asc" else "<"
            conditions.append(
                f"(created_at, id) {op} ({q.p(store.ts(created_at))}, {q.p(row_id)})"
            )
        direction = "ASC" if order == "asc" else "DESC"
        sql = f"SELECT {', '.join(COLUMNS[table])} FROM {table}"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += f" ORDER BY created_at {direction}, id {direction} LIMIT {q.p(limit + 1)}"
        if offset:
            # Slow on deep pages (it reads and discards every skipped row): prefer the cursor.
            if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**62:
                raise ValidationError(f"offset must be a whole number from 0 to 2**62, got "
                                      f"{shown(offset)}", field="offset")
            sql += f" OFFSET {q.p(offset)}"
        # A long page is read off the event loop (on SQLite: the store's thread).
        rows = await store.fetch(sql, q.params, heavy=limit > HEAVY_PAGE)
        if len(rows) > limit:
            rows = rows[:limit]
            return Page(rows, encode_cursor(rows[-1], order))
        return Page(rows, None)

    async def _iter(self, page: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
                    ) -> AsyncIterator[dict[str, Any]]:
        # An offset was applied to every page (skipping that many rows per 1,000), and limit or
        # cursor collided with the pages' own (a bare TypeError).
        paging = sorted(set(kwargs) & {"limit", "cursor", "offset"})
        if paging:
            raise ValidationError(f"iter_* reads every row, page by page: {paging[0]} is not "
                                  "taken here (list_* and page_* take limit, cursor and offset)",
                                  field=paging[0])
        cursor = None
        while True:
            result: Page = await page(*args, **kwargs, limit=ITER_PAGE, cursor=cursor)
            for row in result.items:
                yield row
            if result.next_cursor is None:
                return
            cursor = result.next_cursor
