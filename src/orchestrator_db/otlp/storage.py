"""The database side of OTLP ingest: lookups in batches, validated bulk writes, orchestrators.

Rows are validated with the library's own payload models (``AgentCreate``, ``PromptCreate``,
``AgentLogCreate``, ``SystemLogCreate``) and written with ``insert_records``, the bulk path
(COPY on PostgreSQL, ``executemany`` on SQLite). Values only ever travel as driver parameters;
lists of ids are chunked so no statement holds more than ``CHUNK`` of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pydantic

from ..errors import DuplicateError, ValidationError
from ..manager import CoreManager
from ..models import AgentCreate, AgentLogCreate, PromptCreate, SystemLogCreate
from ..tables import OTLP_SPAN_COLUMNS, OTLP_SPANS_TABLE
from ..validation import validation_error
from .plan import Link, Orchestrator

CHUNK = 500
# The log_type of an agent log made from an OTLP log record (not from a span).
RECORD_LOG_TYPE = "log"
_LINK_COLUMNS = ", ".join(OTLP_SPAN_COLUMNS)
# Each table's payload model, its fields, and the columns set by ingest rather than validated.
_MODELS: dict[str, tuple[type[pydantic.BaseModel], tuple[str, ...], tuple[str, ...]]] = {
    table: (model, tuple(model.model_fields), given) for table, model, given in (
        ("agents", AgentCreate, ("id", "created_at", "updated_at")),
        ("prompts", PromptCreate, ("id", "created_at")),
        ("agent_logs", AgentLogCreate, ("id",)),
        ("system_logs", SystemLogCreate, ("id",)))
}


def validated(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``row`` checked by the table's payload model, ready for ``insert_records``.

    Raises:
        ValidationError: a value the library would refuse.
    """
    model, fields, given = _MODELS[table]
    try:
        data = model.model_validate({k: row[k] for k in fields if k in row})
    except pydantic.ValidationError as exc:
        raise validation_error(exc, model) from exc
    value = dict(data.__dict__)  # keeps the encoded JSON the model made (JsonText)
    for key in given:
        value[key] = row[key]
    if "created_at" in value and value["created_at"] is None:
        raise ValidationError("created_at is missing", field="created_at")
    return value


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]


def _link(row: dict[str, Any]) -> Link:
    """An ``otlp_spans`` row as a Link (ids as text, flags as bools on both engines)."""
    return Link(row["span_id"], row["trace_id"], row["parent_span_id"], str(row["agent_id"]),
                bool(row["is_agent"]), bool(row["orphan"]))


class Storage:
    """One manager's OTLP lookups and writes."""

    def __init__(self, db: CoreManager) -> None:
        self.db = db
        self._orchestrators: dict[str, str] = {}  # name -> id

    # lookups -------------------------------------------------------------------------------
    async def links(self, span_ids: Iterable[str]) -> dict[tuple[str, str], Link]:
        """The stored links of these span ids, by (trace_id, span_id)."""
        return await self._links("span_id", sorted(set(span_ids)), orphans=False)

    async def orphans(self, parent_ids: Iterable[str]) -> dict[tuple[str, str], Link]:
        """The stored orphans whose parent is one of these span ids."""
        return await self._links("parent_span_id", sorted(set(parent_ids)), orphans=True)

    async def _links(self, column: str, values: list[str], *, orphans: bool
                     ) -> dict[tuple[str, str], Link]:
        store = self.db.store
        out: dict[tuple[str, str], Link] = {}
        for chunk in _chunks(values):
            q = store.query()
            marks = ", ".join(q.p(v) for v in chunk)
            where = f"{column} IN ({marks})" + (" AND orphan" if orphans else "")
            rows = await store.fetch(
                f"SELECT {_LINK_COLUMNS} FROM {OTLP_SPANS_TABLE} WHERE {where}", q.params)
            for r in rows:
                out[(r["trace_id"], r["span_id"])] = _link(r)
        return out

    async def held(self, agent_id: str) -> list[Link]:
        """The links of the spans an agent run holds (a trace's implicit agent: its strays)."""
        q = self.db.store.query()
        rows = await self.db.store.fetch(
            f"SELECT {_LINK_COLUMNS} FROM {OTLP_SPANS_TABLE} WHERE agent_id = {q.p(agent_id)}",
            q.params)
        return [_link(r) for r in rows]

    async def held_records(self, agent_id: str) -> dict[str, tuple[str, str]]:
        """The OTLP log records an agent run holds: log id -> the (trace_id, span_id) they name.

        A log record's span is in its ``details`` (its ``span_id`` column stays empty: that is
        the key of the log a span itself becomes, and a span may have many log records).
        """
        q = self.db.store.query()
        rows = await self.db.store.fetch(
            f"SELECT id, details FROM agent_logs WHERE agent_id = {q.p(agent_id)} "
            f"AND log_type = {q.p(RECORD_LOG_TYPE)} AND span_id IS NULL", q.params)
        out: dict[str, tuple[str, str]] = {}
        for r in rows:
            details = r["details"]
            if isinstance(details, dict):
                trace_id, span_id = details.get("trace_id"), details.get("span_id")
                if isinstance(trace_id, str) and isinstance(span_id, str):
                    out[str(r["id"])] = (trace_id, span_id)
        return out

    async def parentless(self, agent_ids: Iterable[str]) -> set[str]:
        """The agent runs among ``agent_ids`` that have no parent run."""
        store = self.db.store
        found: set[str] = set()
        for chunk in _chunks(sorted(set(agent_ids))):
            q = store.query()
            condition = store.ids_condition(q, list(chunk))
            rows = await store.fetch(
                f"SELECT id FROM agents WHERE {condition} AND parent_agent_id IS NULL", q.params)
            found.update(str(r["id"]) for r in rows)
        return found

    async def sessions(self, trace_ids: Iterable[str]) -> dict[str, str]:
        """The session the stored agents of each trace have, preferring a named one."""
        store = self.db.store
        out: dict[str, str] = {}
        for chunk in _chunks(sorted(set(trace_ids))):
            q = store.query()
            rows = await store.fetch(
                f"SELECT DISTINCT trace_id, session_id FROM agents WHERE trace_id IS NOT NULL "
                f"AND trace_id IN ({', '.join(q.p(t) for t in chunk)})", q.params)
            for r in rows:
                if r["session_id"] != r["trace_id"] or r["trace_id"] not in out:
                    out[r["trace_id"]] = r["session_id"]
        return out

    async def existing(self, table: str, ids: Iterable[str]) -> set[str]:
        """The ids among ``ids`` that ``table`` already holds."""
        store = self.db.store
        found: set[str] = set()
        for chunk in _chunks(sorted(set(ids))):
            q = store.query()
            condition = store.ids_condition(q, list(chunk))
            rows = await store.fetch(f"SELECT id FROM {table} WHERE {condition}", q.params)
            found.update(str(r["id"]) for r in rows)
        return found

    async def holders(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The agent run holding each stored (trace_id, span_id), for log records."""
        wanted = set(keys)
        links = await self.links(span for _, span in wanted)
        return {key: link.agent_id for key, link in links.items() if key in wanted}

    async def lock_agent(self, agent_id: str) -> bool:
        """Lock an agent row until the transaction ends; return whether it is there.

        On PostgreSQL this waits for the transactions that have just written rows referencing
        it (their foreign key check holds a share lock on it), so a statement after this one
        sees those rows; SQLite's write transaction is exclusive already.
        """
        store = self.db.store
        q = store.query()
        rows = await store.fetch(f"SELECT a.id FROM agents a WHERE a.id = {q.p(agent_id)}"
                                 f"{store.lock_rows_clause('a')}", q.params)
        return bool(rows)

    # orchestrator agents -------------------------------------------------------------------
    async def orchestrator_id(self, wanted: Orchestrator) -> str:
        """The id of the orchestrator agent named ``wanted.name``, created when new."""
        cached = self._orchestrators.get(wanted.name)
        if cached is not None:
            return cached
        db = self.db
        row = await db.get_orchestrator_agent_by_name(wanted.name)
        if row is None:
            try:
                orchestrator_id = await db.create_orchestrator_agent(
                    wanted.name, wanted.description, default_model=wanted.default_model,
                    agent_type="opentelemetry")
            except DuplicateError:  # another process created it just now
                row = await db.get_orchestrator_agent_by_name(wanted.name)
                if row is None:
                    raise
                orchestrator_id = str(row["id"])
        else:
            orchestrator_id = str(row["id"])
        self._orchestrators[wanted.name] = orchestrator_id
        return orchestrator_id

    def forget_orchestrators(self) -> None:
        """Drop the cached ids (one was deleted: an insert failed on its foreign key)."""
        self._orchestrators.clear()

    # writes --------------------------------------------------------------------------------
    async def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert validated rows (in the caller's transaction)."""
        if rows:
            await self.db.insert_records(table, rows)

    async def insert_links(self, links: Sequence[Link]) -> None:
        """Insert span links (in the caller's transaction)."""
        if links:
            await self.db.store.insert_many(OTLP_SPANS_TABLE, OTLP_SPAN_COLUMNS, [
                (k.span_id, k.trace_id, k.parent_span_id, k.agent_id, k.is_agent, k.orphan)
                for k in links])

    async def execute(self, sql: str, params: Sequence[Any]) -> int:
        """Run one parameterised statement (in the caller's transaction)."""
        return await self.db.store.execute(sql, params)

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        """Run one parameterised query."""
        return await self.db.store.fetch(sql, params)


__all__ = ["CHUNK", "RECORD_LOG_TYPE", "Storage", "validated"]
