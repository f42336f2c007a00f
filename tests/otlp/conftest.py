"""Fixtures for the OTLP tests: the app in-process (both engines) and its manager."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastapi import FastAPI

from orchestrator_db import DatabaseManager

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "api"))  # apihelpers: real `serve` processes


@pytest.fixture
def manager(app: FastAPI) -> DatabaseManager:
    """The app's own manager, to read back what was stored."""
    db: DatabaseManager = app.state.db
    return db
