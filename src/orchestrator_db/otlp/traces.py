"""Spans into the database: skip what is stored, plan the rest, write it in one transaction.

A batch is written in one transaction: the implicit agents it needs, agent runs (parents first),
prompts, logs and span links, then the links it resolves — orphans whose parent arrived are
moved, with everything beneath them, from the trace's implicit agent to the agent run above them,
and sub-agents get their ``parent_agent_id``. An implicit agent left holding nothing is deleted.

A span already stored (the same trace and span id) is skipped, whatever it became, so an
exporter's retry writes nothing twice. Two processes writing the same span at the same moment:
one transaction fails on a unique key and is retried, and then finds the span stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConstraintError, ValidationError
from ..models import utc_now
from .plan import Link, Plan, implicit_agent_id, make_plan
from .spans import SpanView
from .storage import CHUNK, Storage, validated

RETRIES = 2


@dataclass
class Outcome:
    """What became of a batch: which items were refused (their keys), and why (the first reason).

    A key is a trace id for spans (a trace is refused whole) and a record's id for log records.
    """

    refused: set[str] = field(default_factory=set)
    message: str = ""

    def refuse(self, keys: Iterable[str], message: str) -> None:
        """Note refused items, keeping the first reason."""
        before = len(self.refused)
        self.refused.update(keys)
        if len(self.refused) > before:
            self.message = self.message or message


@dataclass
class _Prepared:
    plan: Plan
    agents: list[dict[str, Any]]
    prompts: list[dict[str, Any]]
    logs: list[dict[str, Any]]


@dataclass
class Staged:
    """A batch planned and validated, ready to write (``prepared`` None: nothing to write).

    While it is being written, the next batch is staged against it (``overlay``): its links
    count as stored, its orphans as orphans, its sessions as the traces' sessions.
    """

    outcome: Outcome
    prepared: _Prepared | None = None
    sessions: dict[str, str] = field(default_factory=dict)
    links: dict[tuple[str, str], Link] = field(default_factory=dict)


async def ingest_spans(storage: Storage, spans: list[SpanView]) -> Outcome:
    """Store new spans as agents, prompts and logs; return how many were refused and why."""
    for attempt in range(RETRIES + 1):
        try:
            staged = await stage_spans(storage, spans)
            await write_staged(storage, staged)
            return staged.outcome
        except ConstraintError:
            # Another process wrote one of these spans (or deleted an orchestrator agent)
            # meanwhile: look again at what is stored.
            storage.forget_orchestrators()
            if attempt == RETRIES:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def stage_spans(storage: Storage, spans: list[SpanView], overlay: Staged | None = None
                      ) -> Staged:
    """Look up, plan and validate a batch (against ``overlay``, a batch being written)."""
    staged = Staged(Outcome())
    unique: dict[tuple[str, str], SpanView] = {}
    for span in spans:
        unique.setdefault((span.trace_id, span.span_id), span)
    parents = {(s.trace_id, s.parent_span_id) for s in unique.values()
               if s.parent_span_id is not None}
    stored = await storage.links([s for _, s in unique] + [s for _, s in parents])
    if overlay is not None:
        stored.update((key, overlay.links[key]) for key in (unique.keys() | parents)
                      if key in overlay.links)
    new = [span for key, span in unique.items() if key not in stored]
    if not new:
        return staged
    new_keys = {(s.trace_id, s.span_id) for s in new}
    found = await storage.orphans(s for _, s in new_keys)
    if overlay is not None:
        found.update((key, link) for key, link in overlay.links.items() if link.orphan)
    orphans = [link for link in found.values() if (link.trace_id, link.parent_span_id) in new_keys]
    known = {key: link for key, link in stored.items() if key in parents}
    sessions = await storage.sessions({s.trace_id for s in new})
    if overlay is not None:
        sessions.update((t, s) for t, s in overlay.sessions.items()
                        if sessions.get(t, t) == t)
    while True:
        plan = await asyncio.to_thread(make_plan, new, known, orphans, sessions, utc_now())
        ids = {key: await storage.orchestrator_id(o) for key, o in plan.orchestrators.items()}
        prepared, refused = await asyncio.to_thread(_prepare, plan, ids)
        if not refused:
            break
        # A row the library would refuse: drop its whole trace (its spans may hold the others).
        message, traces = refused
        staged.outcome.refuse(traces, message)
        new = [s for s in new if s.trace_id not in traces]
        orphans = [o for o in orphans if o.trace_id not in traces]
        if not new:
            return staged
    staged.prepared = prepared
    staged.sessions = sessions
    staged.links = {(k.trace_id, k.span_id): k for k in plan.links}
    return staged


async def write_staged(storage: Storage, staged: Staged) -> None:
    """Write a staged batch in one transaction."""
    if staged.prepared is not None:
        await _write(storage, staged.prepared, staged.sessions)


def _prepare(plan: Plan, orchestrator_ids: dict[str, str]
             ) -> tuple[_Prepared, tuple[str, set[str]] | None]:
    """Validate every row; on failure say why and which traces' rows failed."""
    bad: set[str] = set()
    message = ""

    def check(table: str, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        nonlocal message
        out = []
        for row in rows:
            try:
                out.append(validated(table, row))
            except ValidationError as exc:
                bad.add(row["trace_id"])
                message = message or f"a span of trace {row['trace_id']}: {exc.message}"
        return out

    for row in [*plan.agents, *plan.implicit.values()]:
        row["orchestrator_agent_id"] = orchestrator_ids[row["id"]]
    agents = check("agents", plan.agents)
    prompts = check("prompts", plan.prompts)
    logs = check("agent_logs", plan.logs)
    return _Prepared(plan, agents, prompts, logs), ((message, bad) if bad else None)


async def _write(storage: Storage, prepared: _Prepared, stored_sessions: dict[str, str]) -> None:
    plan = prepared.plan
    db = storage.db
    implicit = [validated("agents", row) for row in plan.implicit.values()]
    async with db.transaction():
        present = await storage.existing("agents", [row["id"] for row in implicit])
        await storage.insert("agents", [row for row in implicit if row["id"] not in present])
        await storage.insert("agents", prepared.agents)
        await storage.insert("prompts", prepared.prompts)
        await storage.insert("agent_logs", prepared.logs)
        await storage.insert_links(plan.links)
        await _adopt(storage, plan.adopted)
        await _name_sessions(storage, plan.sessions, stored_sessions)


async def _adopt(storage: Storage, adopted: list[tuple[Link, str | None]]) -> None:
    """Link stored orphans to the parents that have just arrived."""
    if not adopted:
        return
    traces: dict[str, list[tuple[Link, str | None]]] = {}
    for link, ancestor in adopted:
        traces.setdefault(link.trace_id, []).append((link, ancestor))
    store = storage.db.store
    for trace_id, links in traces.items():
        implicit = implicit_agent_id(trace_id)
        for link, ancestor in links:
            q = store.query()
            await storage.execute(
                f"UPDATE otlp_spans SET orphan = {q.p(False)} WHERE span_id = {q.p(link.span_id)}"
                f" AND trace_id = {q.p(trace_id)}", q.params)
            if ancestor is None:
                continue  # its parent is an orphan too: it moves when that one is adopted
            if link.is_agent:
                await _set_parent(storage, [link.agent_id], ancestor)
            elif link.agent_id == implicit:
                await _move(storage, trace_id, implicit, link.span_id, ancestor)
        q = store.query()
        await storage.execute(
            f"DELETE FROM agents WHERE id = {q.p(implicit)} "
            f"AND NOT EXISTS (SELECT 1 FROM otlp_spans WHERE agent_id = {q.p(implicit)}) "
            f"AND NOT EXISTS (SELECT 1 FROM prompts WHERE agent_id = {q.p(implicit)}) "
            f"AND NOT EXISTS (SELECT 1 FROM agent_logs WHERE agent_id = {q.p(implicit)})",
            q.params)


async def _move(storage: Storage, trace_id: str, implicit: str, root: str, agent_id: str) -> None:
    """Move a subtree held by the implicit agent (from span ``root`` down) to ``agent_id``.

    Every lookup goes through an index: the implicit agent's spans by ``agent_id``, the trace's
    agent runs still without a parent by ``trace_id``, their spans by primary key.
    """
    store = storage.db.store
    q = store.query()
    held = await storage.fetch(
        f"SELECT span_id, parent_span_id FROM otlp_spans WHERE agent_id = {q.p(implicit)}",
        q.params)
    children: dict[str | None, list[str]] = {}
    for row in held:
        children.setdefault(row["parent_span_id"], []).append(row["span_id"])
    moved: list[str] = []
    stack = [root]
    while stack:
        span_id = stack.pop()
        moved.append(span_id)
        stack.extend(children.get(span_id, []))
    for table in ("prompts", "agent_logs", "otlp_spans"):
        for start in range(0, len(moved), CHUNK):
            chunk = moved[start:start + CHUNK]
            q = store.query()
            await storage.execute(
                f"UPDATE {table} SET agent_id = {q.p(agent_id)} WHERE trace_id = {q.p(trace_id)} "
                f"AND span_id IS NOT NULL AND span_id IN ({', '.join(q.p(s) for s in chunk)})",
                q.params)
    # Sub-agents whose parent span is in the subtree: they had no agent above them till now.
    q = store.query()
    roots = await storage.fetch(
        f"SELECT id, span_id FROM agents WHERE trace_id = {q.p(trace_id)} "
        f"AND span_id IS NOT NULL AND parent_agent_id IS NULL", q.params)
    if roots:
        links = await storage.links(str(r["span_id"]) for r in roots)
        subtree = set(moved)
        await _set_parent(storage, [str(r["id"]) for r in roots if (
            link := links.get((trace_id, r["span_id"]))) is not None
            and link.parent_span_id in subtree], agent_id)


async def _set_parent(storage: Storage, agent_ids: list[str], parent: str) -> None:
    """Give agent runs that have none the parent that has just arrived."""
    store = storage.db.store
    for agent_id in agent_ids:
        if agent_id == parent:
            continue
        q = store.query()
        await storage.execute(
            f"UPDATE agents SET parent_agent_id = {q.p(parent)}, "
            f"updated_at = {q.p(store.ts(utc_now()))} "
            f"WHERE id = {q.p(agent_id)} AND parent_agent_id IS NULL", q.params)


async def _name_sessions(storage: Storage, sessions: dict[str, str], stored: dict[str, str]
                         ) -> None:
    """Agents stored under their trace id move to the session a later span names."""
    store = storage.db.store
    for trace_id, session in sessions.items():
        if session == trace_id or stored.get(trace_id, session) != trace_id:
            continue
        q = store.query()
        await storage.execute(
            f"UPDATE agents SET session_id = {q.p(session)} WHERE trace_id = {q.p(trace_id)} "
            f"AND session_id = {q.p(trace_id)}", q.params)


__all__ = ["Outcome", "Staged", "ingest_spans", "stage_spans", "write_staged"]
