"""What the change feed hands out: events, the filters subscribers give, and how they are built.

``EventBuilder`` turns a batch of change rows into events, each with its record read back when
the event is delivered, and the agent's session filled in for prompts and logs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..models import LOG_LEVEL_NUMBERS
from ..store.changes import ChangeReader
from ..tables import AGENT_CHILD_TABLES, COLUMNS, LOG_TABLES
from ..validation import check_level

SESSION_CACHE = 10_000  # agent id -> session id entries kept
# Notices that are not changes of a record: the subscriber's position is ahead of the database
# (it was recreated or replaced: start over from ``position``), and the feed cannot read changes
# (``row["message"]`` says why; it keeps trying and events resume when it can).
RESET = "reset"
FEED_ERROR = "feed_error"


@dataclass(frozen=True)
class ChangeEvent:
    """One committed insert, update or delete of a record."""

    position: int
    table: str
    op: str
    id: str
    row: dict[str, Any] | None
    session_id: str | None
    agent_id: str | None
    log_level: str | None

    @classmethod
    def notice(cls, op: str, position: int, message: str) -> ChangeEvent:
        """Return a notice (``RESET`` or ``FEED_ERROR``) at ``position``, for every subscriber."""
        return cls(position=position, table="", op=op, id="", row={"message": message},
                   session_id=None, agent_id=None, log_level=None)

    @property
    def is_notice(self) -> bool:
        """Whether this is a notice rather than a change of a record."""
        return self.op in (RESET, FEED_ERROR)

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON-ready dict."""
        return {
            "position": self.position, "table": self.table, "op": self.op, "id": self.id,
            "row": self.row, "session_id": self.session_id, "agent_id": self.agent_id,
            "log_level": self.log_level,
        }

    @functools.cached_property
    def json(self) -> str:
        """The event as compact JSON text, encoded once however many subscribers send it."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Filters:
    """What a subscriber asked for; None lets everything through."""

    session_id: str | None
    agent_id: str | None
    min_level: int | None

    @functools.cached_property
    def everything(self) -> bool:
        """Whether every event passes (no filter given)."""
        return self.session_id is None and self.agent_id is None and self.min_level is None

    def match(self, event: ChangeEvent) -> bool:
        """Return whether the event passes every filter."""
        if self.session_id is not None and event.session_id != self.session_id:
            return False
        if self.agent_id is not None and event.agent_id != self.agent_id:
            return False
        if self.min_level is not None and event.table in LOG_TABLES:
            return LOG_LEVEL_NUMBERS.get(event.log_level or "", 0) >= self.min_level
        return True


def event_filter(session_id: str | None = None, agent_id: str | None = None,
                 min_level: str | None = None) -> Callable[[ChangeEvent], bool]:
    """Return the predicate ``subscribe`` applies, for callers that filter replayed events."""
    floor = None if min_level is None else LOG_LEVEL_NUMBERS[check_level(min_level, "min_level")]
    return Filters(session_id, agent_id, floor).match


class EventBuilder:
    """Turns change rows into events, reading the records back through a ``ChangeReader``."""

    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}  # agent id -> session id, kept across restarts

    async def events(self, reader: ChangeReader, changes: list[dict[str, Any]]
                     ) -> list[ChangeEvent]:
        """Turn change rows into events, reading the records back (one SELECT per table).

        The session of a prompt or log event is its agent's session: from the agent's own
        change rows seen so far or in this batch (a deleted agent's delete row carries it, and
        on SQLite a cascade's child deletes come before it), else from the agents table.
        """
        wanted: dict[str, set[str]] = {}
        for change in changes:
            # A table this version does not know (a newer writer's) is delivered without a row.
            if change["op"] != "delete" and change["table_name"] in COLUMNS:
                wanted.setdefault(change["table_name"], set()).add(change["row_id"])
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for table, ids in wanted.items():
            for row in await reader.select(table, sorted(ids)):
                rows[(table, row["id"])] = row
        for change in changes:
            if change["table_name"] == "agents" and change["session_id"] is not None:
                self._remember(change["agent_id"], change["session_id"])
        missing = {c["agent_id"] for c in changes if c["table_name"] in AGENT_CHILD_TABLES
                   and c["agent_id"] is not None and c["agent_id"] not in self.sessions}
        if missing:
            for row in await reader.select("agents", sorted(missing), ("id", "session_id")):
                self._remember(row["id"], row["session_id"])
        out = []
        for change in changes:
            table = change["table_name"]
            session_id = change["session_id"]
            if session_id is None and table in AGENT_CHILD_TABLES and change["agent_id"]:
                session_id = self.sessions.get(change["agent_id"])
            out.append(ChangeEvent(
                position=int(change["position"]), table=table, op=change["op"],
                id=change["row_id"], row=rows.get((table, change["row_id"])),
                session_id=session_id, agent_id=change["agent_id"],
                log_level=change["log_level"],
            ))
        return out

    def _remember(self, agent_id: str, session_id: str) -> None:
        if len(self.sessions) >= SESSION_CACHE and agent_id not in self.sessions:
            self.sessions.clear()
        self.sessions[agent_id] = session_id


__all__ = ["FEED_ERROR", "RESET", "SESSION_CACHE", "ChangeEvent", "EventBuilder", "Filters",
           "event_filter"]
