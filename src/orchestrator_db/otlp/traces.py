"""Spans into the database: skip what is stored, plan the rest, write it in one transaction.

A batch is written in one transaction: the implicit agents it needs, agent runs (parents first),
prompts, logs and span links, then the links it resolves — orphans whose parent arrived are
moved, with everything beneath them, from the trace's implicit agent to the agent run above them,
and sub-agents get their ``parent_agent_id``; the OTLP log records naming a moved span move with
it. An implicit agent left holding nothing is deleted.

The lookups a batch is planned from are made before its transaction, so another process may
write a parent, a child, or move a subtree meanwhile: the batch looks again inside its
transaction and once more after its commit (``resolve.py``).

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
from .resolve import adopt, resolve, resolve_committed
from .spans import SpanView
from .storage import Storage, validated

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
    keys = {(k.trace_id, k.span_id) for k in plan.links}
    # The batch was planned from lookups made before this transaction: another process may
    # have written a parent, or moved one out of its implicit agent, since. These spans (their
    # parent outside the batch, and no agent run above them yet) look again.
    unsure = {(k.trace_id, k.span_id) for k in plan.links if k.parent_span_id is not None
              and (k.trace_id, k.parent_span_id) not in keys
              and (k.is_agent or k.agent_id == implicit_agent_id(k.trace_id))}
    async with db.transaction():
        present = await storage.existing("agents", [row["id"] for row in implicit])
        await storage.insert("agents", [row for row in implicit if row["id"] not in present])
        await storage.insert("agents", prepared.agents)
        await storage.insert("prompts", prepared.prompts)
        await storage.insert("agent_logs", prepared.logs)
        await storage.insert_links(plan.links)
        moved = await adopt(storage, plan.adopted)
        await _name_sessions(storage, plan.sessions, stored_sessions)
        moved |= await resolve(storage, unsure, keys | moved, moved,
                               {link.trace_id for link, _ in plan.adopted})
    await resolve_committed(storage, unsure, keys | moved, moved)


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
