"""The engines: every operation that differs between SQLite and PostgreSQL lives here."""

from __future__ import annotations

from typing import Any, assert_never

from ..config import Dialect, Target
from .base import Query, Store, TxState, current_tx
from .changes import ChangeReader


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


__all__ = ["ChangeReader", "Query", "Store", "TxState", "current_tx", "new_store",
           "render_schema", "store_class"]
