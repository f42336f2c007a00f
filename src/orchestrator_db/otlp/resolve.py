"""Linking spans to what arrived since they were planned, whoever wrote it.

A batch's lookups (its spans' parents, the orphans waiting for its spans) are made outside its
write transaction, and a concurrent writer's uncommitted rows are invisible to them. SQLite's
write transaction is exclusive, so looking again inside it (``resolve``) sees every other
writer's commit. On PostgreSQL two writers of one trace can both look before either commits,
so each looks once more after its commit (``resolve_committed``): of a child and its parent
written at once, whichever commits last sees the other. A look that moves spans is itself
such a write, and is followed by one more look at what it moved; moves only ever take spans
from an implicit agent to the agent run above them, so this ends.

OTLP log records held by an implicit agent move with their span (``resolve_records`` for
records written while their span moves).
"""

from __future__ import annotations

from ..errors import OrchestratorDBError
from ..models import utc_now
from .plan import Link, implicit_agent_id
from .storage import CHUNK, Storage

Key = tuple[str, str]  # (trace_id, span_id)
Fix = tuple[Link, str | None]  # a span's link, and the agent run it belongs under (if any yet)
PASSES = 4


async def resolve_committed(storage: Storage, spans: set[Key], parents: set[Key],
                            moved: set[Key]) -> None:
    """After a commit: ``resolve`` again, for what concurrent writers committed meanwhile."""
    for attempt in range(PASSES):
        if not await _fixes(storage, spans, parents, moved) and not await _strays(
                storage, {t for t, _ in moved}):
            return
        try:
            async with storage.db.transaction():
                found = await resolve(storage, spans, parents, moved, set())
        except OrchestratorDBError:
            # A deadlock with another writer's moves (PostgreSQL), or a run deleted: look again.
            if attempt == PASSES - 1:
                raise
            continue
        spans, parents, moved = set(), found, found
        if not found:
            return


async def resolve(storage: Storage, spans: set[Key], parents: set[Key], moved: set[Key],
                  traces: set[str]) -> set[Key]:
    """Link spans to parents and children stored since they were planned (in a transaction).

    Args:
        spans: spans whose parent may have been stored since.
        parents: spans whose children may have been stored since.
        moved: spans just moved out of an implicit agent: children and log records left
            behind under it follow them.
        traces: traces whose implicit agent may hold nothing any more.

    Returns:
        The spans this moved out of an implicit agent.
    """
    fixes = await _fixes(storage, spans, parents, moved)
    found = await adopt(storage, fixes)
    strays = await _strays(storage, {t for t, _ in moved | found})
    await _move_records(storage, strays)
    await _drop_empty(storage, traces | {link.trace_id for link, _ in fixes}
                      | {trace_id for trace_id, _ in strays.values()})
    return found


async def _fixes(storage: Storage, spans: set[Key], parents: set[Key], moved: set[Key]
                 ) -> list[Fix]:
    """The stored spans that are not yet linked as the stored spans around them say."""
    candidates: dict[Key, Link] = {}
    if spans:
        found = await storage.links(s for _, s in spans)
        candidates.update((k, v) for k, v in found.items() if k in spans)
    if parents:
        found = await storage.orphans(s for _, s in parents)
        candidates.update((k, v) for k, v in found.items()
                          if (v.trace_id, v.parent_span_id) in parents)
    for trace_id in sorted({t for t, _ in moved}):
        for link in await storage.held(implicit_agent_id(trace_id)):
            if (link.trace_id, link.parent_span_id) in moved:
                candidates[(link.trace_id, link.span_id)] = link
    wanted = {(k.trace_id, k.parent_span_id) for k in candidates.values()
              if k.parent_span_id is not None}
    if not wanted:
        return []
    stored = await storage.links(s for _, s in wanted)
    parentless = await storage.parentless(k.agent_id for k in candidates.values() if k.is_agent)
    fixes: list[Fix] = []
    for key in sorted(candidates):  # one order in every process: fewer deadlocks
        link = candidates[key]
        parent = stored.get((link.trace_id, link.parent_span_id or ""))
        if parent is None:
            continue  # still an orphan
        implicit = implicit_agent_id(link.trace_id)
        above = None if parent.agent_id == implicit else parent.agent_id
        if above is not None and not (link.agent_id in parentless if link.is_agent
                                      else link.agent_id == implicit):
            above = None  # linked already
        if above is not None or link.orphan:
            fixes.append((link, above))
    return fixes


async def adopt(storage: Storage, fixes: list[Fix]) -> set[Key]:
    """Link spans to the parents that have arrived; return the spans moved.

    An orphan is an orphan no more; under an agent run now, a sub-agent gets it as its parent
    and a span held by the implicit agent moves to it with everything beneath it.
    """
    store = storage.db.store
    moved: set[Key] = set()
    for link, ancestor in fixes:
        trace_id = link.trace_id
        if link.orphan:
            q = store.query()
            await storage.execute(
                f"UPDATE otlp_spans SET orphan = {q.p(False)} WHERE span_id = {q.p(link.span_id)}"
                f" AND trace_id = {q.p(trace_id)}", q.params)
        if ancestor is None:
            continue  # its parent is an orphan too: it moves when that one is adopted
        implicit = implicit_agent_id(trace_id)
        if link.is_agent:
            await _set_parent(storage, [link.agent_id], ancestor)
        elif link.agent_id == implicit:
            subtree = await _move(storage, trace_id, implicit, link.span_id, ancestor)
            moved.update((trace_id, span_id) for span_id in subtree)
    return moved


async def _strays(storage: Storage, trace_ids: set[str]) -> dict[str, Key]:
    """Log records left under the implicit agent of these traces though their span moved on.

    Returns:
        log id -> (trace id, the agent run to move it to).
    """
    out: dict[str, Key] = {}
    for trace_id in sorted(trace_ids):
        implicit = implicit_agent_id(trace_id)
        records = {i: k for i, k in (await storage.held_records(implicit)).items()
                   if k[0] == trace_id}
        if not records:
            continue
        links = await storage.links(s for _, s in records.values())
        for log_id, key in sorted(records.items()):
            link = links.get(key)
            if link is not None and link.agent_id != implicit:
                out[log_id] = (trace_id, link.agent_id)
    return out


async def _move_records(storage: Storage, strays: dict[str, Key]) -> None:
    """Move log records from their trace's implicit agent to the agent run given."""
    store = storage.db.store
    by_target: dict[Key, list[str]] = {}
    for log_id, target in strays.items():
        by_target.setdefault(target, []).append(log_id)
    for (trace_id, agent_id), ids in sorted(by_target.items()):
        for start in range(0, len(ids), CHUNK):
            q = store.query()
            mark = q.p(agent_id)
            condition = store.ids_condition(q, ids[start:start + CHUNK])
            await storage.execute(
                f"UPDATE agent_logs SET agent_id = {mark} WHERE {condition} "
                f"AND agent_id = {q.p(implicit_agent_id(trace_id))}", q.params)


async def _drop_empty(storage: Storage, trace_ids: set[str]) -> None:
    """Delete the implicit agents of these traces that hold nothing (in a transaction)."""
    store = storage.db.store
    for trace_id in sorted(trace_ids):
        implicit = implicit_agent_id(trace_id)
        # Locked first: on PostgreSQL that waits for a writer that has just put rows under it
        # (its foreign key check holds the row), so the check below sees them; deleting it
        # would otherwise take them with it (ON DELETE CASCADE).
        if not await storage.lock_agent(implicit):
            continue
        q = store.query()
        await storage.execute(
            f"DELETE FROM agents WHERE id = {q.p(implicit)} "
            f"AND NOT EXISTS (SELECT 1 FROM otlp_spans WHERE agent_id = {q.p(implicit)}) "
            f"AND NOT EXISTS (SELECT 1 FROM prompts WHERE agent_id = {q.p(implicit)}) "
            f"AND NOT EXISTS (SELECT 1 FROM agent_logs WHERE agent_id = {q.p(implicit)})",
            q.params)


async def resolve_records(storage: Storage, trace_ids: set[str]) -> None:
    """Move log records just written under an implicit agent to their span's run (in a tx)."""
    strays = await _strays(storage, trace_ids)
    await _move_records(storage, strays)
    await _drop_empty(storage, {trace_id for trace_id, _ in strays.values()})


async def resolve_records_committed(storage: Storage, trace_ids: set[str]) -> None:
    """After the commit: the same, for spans a concurrent writer moved meanwhile."""
    for attempt in range(PASSES):
        if not await _strays(storage, trace_ids):
            return
        try:
            async with storage.db.transaction():
                await resolve_records(storage, trace_ids)
        except OrchestratorDBError:
            if attempt == PASSES - 1:
                raise


async def _move(storage: Storage, trace_id: str, implicit: str, root: str, agent_id: str
                ) -> list[str]:
    """Move a subtree held by the implicit agent (from span ``root`` down) to ``agent_id``.

    Its spans' records move, and the log records naming them. Every lookup goes through an
    index: the implicit agent's spans and logs by ``agent_id``, the trace's agent runs still
    without a parent by ``trace_id``, their spans by primary key.

    Returns:
        The span ids of the subtree.
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
    subtree = set(moved)
    records = await storage.held_records(implicit)
    await _move_records(storage, {log_id: (trace_id, agent_id) for log_id, key in
                                  records.items() if key[0] == trace_id and key[1] in subtree})
    # Sub-agents whose parent span is in the subtree: they had no agent above them till now.
    q = store.query()
    roots = await storage.fetch(
        f"SELECT id, span_id FROM agents WHERE trace_id = {q.p(trace_id)} "
        f"AND span_id IS NOT NULL AND parent_agent_id IS NULL", q.params)
    if roots:
        links = await storage.links(str(r["span_id"]) for r in roots)
        await _set_parent(storage, [str(r["id"]) for r in roots if (
            link := links.get((trace_id, r["span_id"]))) is not None
            and link.parent_span_id in subtree], agent_id)
    return moved


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


__all__ = ["Fix", "Key", "adopt", "resolve", "resolve_committed", "resolve_records",
           "resolve_records_committed"]
