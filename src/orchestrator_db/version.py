"""The package version, in a module of its own so no part of the package imports the root."""

from __future__ import annotations

__version__ = "0.1.0"
