"""A copy never changes what it reads: the source is opened read-only and never migrated."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dbhelpers import sqlite_at_old_schema
from orchestrator_db import DatabaseManager, SchemaError
from orchestrator_db.config import Dialect
from orchestrator_db.store.migrations import load_migrations
from orchestrator_db.transfer import copy_database


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_copy_leaves_the_source_file_as_it_was(tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    async with DatabaseManager(source) as db:
        oa = await db.create_orchestrator_agent("planner")
        agent = await db.create_agent(oa, "s-1")
        await db.create_agent_logs([{"agent_id": agent, "message": f"m{i}"} for i in range(50)])
    before = _digest(source)
    result = await copy_database(f"sqlite:///{source}", f"sqlite:///{tmp_path / 'copy.db'}")
    assert result.verified and result.copied_rows == 52
    assert _digest(source) == before


async def test_a_source_at_an_older_schema_is_refused_not_migrated(tmp_path: Path) -> None:
    source = tmp_path / "old.db"
    sqlite_at_old_schema(source, len(load_migrations(Dialect.SQLITE)) - 1)  # all but the newest
    before = _digest(source)
    with pytest.raises(SchemaError, match="orchestrator-db upgrade"):
        await copy_database(f"sqlite:///{source}", f"sqlite:///{tmp_path / 'copy.db'}")
    assert _digest(source) == before, "the source was changed (migrated?)"
