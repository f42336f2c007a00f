"""The schema as the package ships it: for ``init`` and ``current``, without a connection."""

from __future__ import annotations

from ..config import Dialect
from ..store import render_schema
from ..store.migrations import load_migrations


def render_sqlite_schema() -> str:
    """Return the complete SQLite schema as one idempotent SQL script.

    A database created from it (``sqlite3 data/orchestrator.db < schema_orchestrator.sqlite``)
    records every migration as applied, so ``connect()`` recognises it as up to date. It is
    generated from the packaged migrations, so it never drifts from them.
    """
    return render_schema(Dialect.SQLITE)


def packaged_schema_version(dialect: Dialect = Dialect.SQLITE) -> int:
    """Return the newest migration this package ships for an engine."""
    return load_migrations(dialect)[-1].version


__all__ = ["packaged_schema_version", "render_sqlite_schema"]
