"""Query building: keyset pages, streaming, time ranges and level filters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import ValidationError
from ..models import LOG_LEVEL_NUMBERS, LOG_LEVELS
from ..pagination import Order, Page, check_limit, check_order, decode_cursor, encode_cursor
from ..store import Query, Store
from ..tables import COLUMNS
from ..validation import check_level, check_time
from .lifecycle import ManagerBase

ITER_PAGE = 1000
# Pages longer than this are read on the store's thread: a 1000-row page decoded on the event
# loop would hold up every other request for milliseconds.
HEAVY_PAGE = 100


class QueryBuilder(ManagerBase):
    """Pages and filters, in one shape for every record kind."""

    async def _page(
        self,
        table: str,
        where: Callable[[Query], list[str]],
        *,
        limit: int,
        cursor: str | None,
        order: Order,
        offset: int | None = None,
    ) -> Page:
        store = self.store
        limit = check_limit(limit)
        order = check_order(order)
        q = store.query()
        conditions = where(q)
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
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValidationError(f"offset must be a whole number ≥ 0, got {offset!r}",
                                      field="offset")
            sql += f" OFFSET {q.p(offset)}"
        # A long page is read off the event loop (on SQLite: the store's thread).
        rows = await store.fetch(sql, q.params, heavy=limit > HEAVY_PAGE)
        if len(rows) > limit:
            rows = rows[:limit]
            return Page(rows, encode_cursor(rows[-1], order))
        return Page(rows, None)

    async def _iter(self, page: Callable[..., Any], kwargs: dict[str, Any]
                    ) -> AsyncIterator[dict[str, Any]]:
        cursor = None
        while True:
            result: Page = await page(**kwargs, limit=ITER_PAGE, cursor=cursor)
            for row in result.items:
                yield row
            if result.next_cursor is None:
                return
            cursor = result.next_cursor

    @staticmethod
    def _time_range(q: Query, store: Store, since: Any, until: Any, column: str = "created_at"
                    ) -> list[str]:
        conditions = []
        start, end = check_time(since, "since"), check_time(until, "until")
        if start is not None:
            conditions.append(f"{column} >= {q.p(store.ts(start))}")
        if end is not None:
            conditions.append(f"{column} < {q.p(store.ts(end))}")
        return conditions

    @staticmethod
    def _levels(q: Query, log_level: Any, min_level: Any) -> list[str]:
        conditions = []
        if log_level is not None:
            conditions.append(f"log_level = {q.p(check_level(log_level, 'log_level'))}")
        if min_level is not None:
            floor = LOG_LEVEL_NUMBERS[check_level(min_level, "min_level")]
            levels = [lvl for lvl in LOG_LEVELS if LOG_LEVEL_NUMBERS[lvl] >= floor]
            conditions.append(f"log_level IN ({', '.join(q.p(lvl) for lvl in levels)})")
        return conditions

