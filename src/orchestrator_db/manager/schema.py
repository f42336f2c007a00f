"""The schema as the package ships it: for ``init`` and ``current``, without a connection."""

from __future__ import annotations

from ..store import packaged_schema_version, render_sqlite_schema

__all__ = ["packaged_schema_version", "render_sqlite_schema"]
