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
    """The five records' operations, aggregates aside: what every feature builds on.

    ``orchestrator_db.DatabaseManager`` is this class with the features' methods added; its
    docstring shows use and the constructor's arguments (``ManagerBase.__init__``).
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

