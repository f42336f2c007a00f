"""The core: connection lifecycle, per-record operations, bulk ingest and query building.

``CoreManager`` is everything the features build on; ``orchestrator_db.DatabaseManager``
(``database.py``) adds the features' methods on top of it.
"""

from .core import CoreManager

__all__ = ["CoreManager"]
