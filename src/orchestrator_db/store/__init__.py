"""The engines: every operation that differs between SQLite and PostgreSQL lives here."""

from __future__ import annotations

from typing import Any, assert_never

from ..config import Dialect, Target
from .base import Query, Store, TxState, current_tx
from .changes import ChangeReader
from .migrations import load_migrations


def store_class(dialect: Dialect) -> type[Store]:
    """Return the store class of an engine (its driver is imported only when asked for)."""
    if dialect is Dialect.SQLITE:
        from .sqlite import SQLiteStore

        return SQLiteStore
    elif dialect is Dialect.POSTGRES:
        from .postgres import PostgresStore

        return PostgresStore
    else:  # pragma: no cover
        assert_never(dialect)


def new_store(target: Target, **options: Any) -> Store:
    """Return an unopened store for ``target``; ``options`` are the engine's own settings."""
    return store_class(target.dialect).from_options(target, **options)


def render_schema(dialect: Dialect) -> str:
    """Return an engine's complete schema as one SQL script, generated from its migrations."""
    return store_class(dialect).render_schema()


def render_sqlite_schema() -> str:
    """Return the complete SQLite schema as one idempotent SQL script (``init`` writes it).

    A database created from it (``sqlite3 data/orchestrator.db < schema_orchestrator.sqlite``)
    records every migration as applied, so ``connect()`` recognises it as up to date. It is
    generated from the packaged migrations, so it never drifts from them.
    """
    return render_schema(Dialect.SQLITE)


def packaged_schema_version() -> int:
    """Return the newest migration this package ships (one numbering for both engines)."""
    return load_migrations(Dialect.SQLITE)[-1].version


__all__ = ["ChangeReader", "Query", "Store", "TxState", "current_tx", "new_store",
           "packaged_schema_version", "render_schema", "render_sqlite_schema", "store_class"]
