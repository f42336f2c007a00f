"""DatabaseManager: the core manager with the features' methods composed on top (design §4).

The core (``manager/``) knows records, queries and bulk ingest; the features — tracking,
aggregates, maintenance — are built on the core's public API and never imported by it. This
module sits above both and gives the documented methods (``db.track_agent()``,
``db.cost_summary()``, ``db.prune()``, ``db.export()`` ...) one home.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import maintenance, summaries
from .manager import CoreManager
from .pagination import DEFAULT_LIMIT, Page
from .tracking import AgentRun


class DatabaseManager(CoreManager):
    """Async access to the orchestrator database, on SQLite or PostgreSQL.

    Example::

        async with DatabaseManager() as db:  # data/orchestrator.db unless configured
            oa = await db.create_orchestrator_agent("planner", "Plans the work")
            agent = await db.create_agent(oa, session_id="s-1")
            await db.create_agent_log(agent, "started", log_type="step_start")

    The constructor's arguments (``db_path``, ``url``, ``schema_path``, ``busy_timeout_ms``,
    ``pool_min_size``, ``pool_max_size``) are described on ``manager.lifecycle.ManagerBase``.
    """

    # aggregates (summaries.py) ---------------------------------------------------------------
    async def session_summary(self, session_id: str) -> dict[str, Any] | None:
        """Agents by status, prompts, tokens, cost and first/last activity of one session.

        ``status`` comes from the latest run of each orchestrator agent (a failed step that was
        retried and then completed leaves the session ``completed``); ``failed_attempts`` counts
        the failed runs a later run of the same orchestrator agent followed, and
        ``agents_by_status["failed"]`` every failed run. None when the session has no agents.
        """
        return await summaries.session_summary(self, session_id)

    async def list_sessions(self, *, limit: int = DEFAULT_LIMIT, offset: int = 0
                            ) -> list[dict[str, Any]]:
        """Return session summaries, the most recently started first."""
        return await summaries.list_sessions(self, limit=limit, offset=offset)

    async def page_sessions(self, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
                            ) -> Page:
        """One page of session summaries, the most recently started first.

        Pass the page's ``next_cursor`` back as ``cursor`` for the next one: sessions keep
        their place however busy they are, so no session is repeated or skipped.
        """
        return await summaries.page_sessions(self, limit=limit, cursor=cursor)

    async def cost_summary(self, group_by: str = "session", since: Any = None, until: Any = None
                           ) -> list[dict[str, Any]]:
        """Prompts, tokens and cost grouped by session, agent, orchestrator_agent, model or day."""
        return await summaries.cost_summary(self, group_by, since, until)

    async def page_costs(self, group_by: str = "session", since: Any = None, until: Any = None,
                         *, limit: int | None = None, cursor: str | None = None) -> Page:
        """``cost_summary`` a page at a time: ``limit`` groups when grouped by session or agent."""
        return await summaries.page_costs(self, group_by, since, until, limit=limit,
                                          cursor=cursor)

    async def stats(self) -> dict[str, Any]:
        """Row counts, size on disk, engine, location and schema version.

        Tables of 100,000 rows or more report the engine's estimate and are marked ``True``
        in ``estimated`` (counting them exactly takes a scan); smaller ones are exact.
        """
        return await summaries.stats(self)

    # tracking (tracking/) --------------------------------------------------------------------
    def track_agent(
        self,
        orchestrator_agent: str,
        session_id: str | None = None,
        *,
        model: str | None = None,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> AgentRun:
        """Track one agent run: ``async with db.track_agent("planner", session_id=s) as run:``.

        Creates (or reuses by name) the orchestrator agent and an ``executing`` agent; on exit
        marks it ``completed``, or ``failed`` with the exception logged, and re-raises. A
        missing ``session_id`` gets a new UUID.
        """
        return AgentRun(self, orchestrator_agent, session_id, model=model, name=name,
                        description=description, metadata=metadata)

    # maintenance (maintenance.py) ------------------------------------------------------------
    async def prune(self, older_than: Any, *, tables: Iterable[str] = (
                        "agent_logs", "system_logs", "prompts"),
                    dry_run: bool = False, batch_size: int = 5000) -> dict[str, int]:
        """Delete rows older than ``older_than`` ("30d", "12h", a timedelta or a datetime).

        Deletes in batches of ``batch_size``, each its own short transaction; the tokens and
        cost of pruned prompts are folded into daily rollups first, so ``cost_summary`` answers
        the same. Returns the rows deleted per table (with ``dry_run``, the rows that would be).
        """
        # One table name is a table, not its letters.
        chosen = (tables,) if isinstance(tables, str) else tuple(tables)
        return await maintenance.prune(self, older_than, tables=chosen, dry_run=dry_run,
                                       batch_size=batch_size)

    async def backup(self, dest: str | os.PathLike[str]) -> Path:
        """Write a consistent snapshot of this SQLite database to the new file ``dest``.

        Safe while writers keep going; never copy the database file with ``cp`` instead (rows
        still in its WAL would be missing).
        """
        return await maintenance.backup(self, dest)

    async def restore(self, src: str | os.PathLike[str], *, force: bool = False) -> None:
        """Replace this database's contents with a snapshot written by ``backup``."""
        await maintenance.restore(self, src, force=force)

    async def export(self, table: str, out: Any, *, format: str = "jsonl",
                     session_id: str | None = None, since: Any = None, until: Any = None) -> int:
        """Stream a table to a text stream as JSON Lines or CSV; return the number of rows."""
        return await maintenance.export(self, table, out, format=format, session_id=session_id,
                                        since=since, until=until)

    async def import_rows(self, table: str, rows: Any, *, batch_size: int = 1000) -> int:
        """Insert exported rows unchanged (ids and timestamps kept); return how many."""
        return await maintenance.import_rows(self, table, rows, batch_size=batch_size)


__all__ = ["DatabaseManager"]
