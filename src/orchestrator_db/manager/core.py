"""CoreManager: the public, engine-neutral API of the five records (design §4).

Every method validates its arguments, builds parameterised SQL from fixed column names (values
only ever travel as driver parameters) and returns plain dicts in one shape on both engines.
"""

from __future__ import annotations

from typing import Any

from ..tables import TABLES
from .logs import LogOperations
from .records import RecordOperations


class CoreManager(RecordOperations, LogOperations):
    """Async access to the orchestrator database, on SQLite or PostgreSQL.

    Example::

        async with DatabaseManager() as db:  # data/orchestrator.db unless configured
            oa = await db.create_orchestrator_agent("planner", "Plans the work")
            agent = await db.create_agent(oa, session_id="s-1")
            await db.create_agent_log(agent, "started", log_type="step_start")

    Args:
        db_path: SQLite file (or a URL). Overridden by ``url``.
        url: ``sqlite:///path`` or ``postgresql://user@host/db``.
        schema_path: create an empty database from this SQL file (as the seed project's
            ``adws/schema/schema_orchestrator.sqlite``); a missing file raises
            ``SchemaNotFoundError``.
        busy_timeout_ms: how long a SQLite writer waits for another process's lock.
        pool_min_size, pool_max_size: the PostgreSQL pool.
    """

    # counts ------------------------------------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        """Row counts, size on disk, engine, location and schema version."""
        store = self.store
        counts = {}
        for table in TABLES:
            rows = await store.fetch(f"SELECT count(*) AS n FROM {table}", heavy=True)
            counts[table] = int(rows[0]["n"])
        return {
            "engine": self.dialect.value,
            "location": self.target.display(),
            "schema_version": await store.schema_version(),
            "size_bytes": await store.storage_bytes(),
            "counts": counts,
        }

    async def schema_version(self) -> int:
        """Return the newest schema migration applied to this database."""
        return await self.store.schema_version()

