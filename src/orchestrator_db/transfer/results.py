"""What a copy reports: one ``TableCopy`` per table, gathered in a ``CopyResult``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["new", "resume", "merge"]
# progress(phase, table, done, total) with phase "copy" or "verify"
ProgressCallback = Callable[[str, str, int, int], None]


@dataclass
class TableCopy:
    """What happened to one table."""

    table: str
    source_rows: int = 0
    existing_rows: int = 0  # in the destination before this run
    copied_rows: int = 0  # written by this run
    destination_rows: int | None = None  # after the run, when verified
    checksum: str | None = None  # SHA-256 of the source rows, equal on both sides if verified


@dataclass
class CopyResult:
    """The outcome of ``copy_database``."""

    source: str
    destination: str
    mode: Mode
    tables: list[TableCopy] = field(default_factory=list)
    verified: bool = False

    @property
    def copied_rows(self) -> int:
        """Rows written by this run, over every table."""
        return sum(t.copied_rows for t in self.tables)


__all__ = ["CopyResult", "Mode", "ProgressCallback", "TableCopy"]
