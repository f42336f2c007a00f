"""Fixtures for the copy tests."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "otlp"))  # otlphelpers: OTLP requests

from copy_helpers import populate  # noqa: E402

from orchestrator_db import DatabaseManager


@pytest.fixture
def source_url(tmp_path: Path) -> str:
    """A populated SQLite database."""
    url = f"sqlite:///{tmp_path}/source/orchestrator.db"

    async def go() -> None:
        async with DatabaseManager(url=url) as db:
            await populate(db)
    asyncio.run(go())
    return url
