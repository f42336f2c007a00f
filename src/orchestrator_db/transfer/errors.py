"""The errors a copy raises, under the package's one tree."""

from __future__ import annotations

from ..errors import OrchestratorDBError


class CopyError(OrchestratorDBError):
    """The copy cannot be done as asked (same database, missing source, foreign data...)."""


class CopyInterrupted(CopyError):
    """The copy stopped early on request (``stop_after_batches``); re-run it to continue."""


class MergeConflict(CopyError):
    """A merge could count some prompts twice: pruned into a cost rollup on one side, live (or
    pruned into another total) on the other. Refused before anything is written."""


class VerificationError(CopyError):
    """After the copy the destination does not hold exactly the source's rows."""


__all__ = ["CopyError", "CopyInterrupted", "MergeConflict", "VerificationError"]
