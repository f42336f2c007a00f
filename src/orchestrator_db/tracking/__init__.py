"""Tracking agent runs and ingesting logs fast (design §5).

- ``db.track_agent(...)`` (``runs.py``): a context manager around one agent run (async, and a
  blocking twin on ``SyncDatabaseManager``), recording status, start/end, failures, logs and
  prompts; ``log_agent_event`` / ``log_system_event``: one-line helpers with the seeds' signature.
- ``OrchestratorDBHandler`` (``handler.py``): a ``logging.Handler`` that queues records and
  writes them in batches from one writer thread.

Built on the core (``CoreManager``) only; ``database.py`` and ``sync.py`` compose it on top.
"""

from .handler import ManagerFacade, OrchestratorDBHandler
from .runs import (
    AgentRun,
    PromptHandle,
    Runner,
    SyncAgentRun,
    SyncPromptHandle,
    current_agent_id,
    log_agent_event,
    log_system_event,
)

__all__ = [
    "AgentRun",
    "ManagerFacade",
    "OrchestratorDBHandler",
    "PromptHandle",
    "Runner",
    "SyncAgentRun",
    "SyncPromptHandle",
    "current_agent_id",
    "log_agent_event",
    "log_system_event",
]
