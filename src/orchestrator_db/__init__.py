"""orchestrator-db: persistence and observability for multi-agent AI orchestrators.

    async with DatabaseManager() as db:          # SQLite at data/orchestrator.db by default
        oa = await db.create_orchestrator_agent("planner", "Plans the work")
        agent = await db.create_agent(oa, session_id="s-1")
"""

from .config import Dialect, resolve_target
from .database import DatabaseManager
from .errors import (
    ConstraintError,
    DuplicateError,
    ForeignKeyError,
    NotConnectedError,
    NotFoundError,
    OrchestratorDBError,
    ReferencedError,
    SchemaError,
    SchemaNotFoundError,
    UnavailableError,
    ValidationError,
)
from .maintenance import apply_retention_policy
from .manager.schema import render_sqlite_schema
from .pagination import Page
from .sync import SyncDatabaseManager
from .tracking import OrchestratorDBHandler, log_agent_event, log_system_event
from .version import __version__

__all__ = [
    "ConstraintError",
    "DatabaseManager",
    "Dialect",
    "DuplicateError",
    "ForeignKeyError",
    "NotConnectedError",
    "NotFoundError",
    "OrchestratorDBHandler",
    "OrchestratorDBError",
    "Page",
    "ReferencedError",
    "SchemaError",
    "SchemaNotFoundError",
    "SyncDatabaseManager",
    "UnavailableError",
    "ValidationError",
    "__version__",
    "apply_retention_policy",
    "log_agent_event",
    "log_system_event",
    "render_sqlite_schema",
    "resolve_target",
]
