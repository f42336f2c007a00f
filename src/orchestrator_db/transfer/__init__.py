"""Copy a whole orchestrator database to another one: SQLite → PostgreSQL, and back (design §9).

How it keeps "nothing lost, nothing twice":

- Tables go in dependency order (parents first), rows in the stable order (created_at, id), in
  batches; each batch is one transaction on the destination, written with the engine's fast path
  (``Store.insert_many``: COPY on PostgreSQL, ``executemany`` on SQLite). Ids and timestamps are
  copied, not re-made.
- So an interrupted copy leaves each destination table holding a *prefix* of the source table.
  Re-running checks that it is one (same number of rows up to the destination's last (created_at,
  id), and that row exists in the source) and continues after it: resumable, never duplicated.
- A destination holding anything else is refused unless ``merge=True``, which adds only the rows
  whose ids the destination lacks (``ON CONFLICT (id) DO NOTHING``).
- Verification compares row counts and a SHA-256 over the canonical JSON of every row (public
  shape, (created_at, id) order) on both sides. For a table this run copied whole, the source
  side is hashed from the rows as they are copied (no second read of the source) and the
  destination is read back; a resumed or merged table is read again on both sides. Any
  difference raises ``VerificationError`` naming the table and the first differing row.
- ``cost_rollups`` (no id: one row per day, session, agent and model) is copied after the five
  record tables as a whole, and compared as a multiset of rows.

Measured (benchmarks/bench_copy.py, 1M agent_logs rows SQLite → PostgreSQL on a shared 2-core
machine): the copy runs at 0.74× a bare ``copy_records_to_table`` of the same rows held in memory,
0.37× including the verification. On SQLite the source is read as driver tuples with JSON left as
its stored text (``JsonText``, from ``Store.fetch_records``), so it is never decoded and encoded
again on the way.

Stop writers on the source while it is copied: rows changed after they were copied are reported
by the verification, not copied again.

The modules, by concern: ``checksums`` (canonical lines, hashing), ``rows`` (read, convert,
write), ``rollups`` (``cost_rollups``), ``verify`` (verification), ``copy`` (the copy loop,
resume and merge), ``results`` and ``errors`` (what a copy reports).
"""

from ..tables import ROLLUP_COLUMNS, ROLLUP_TABLE
from .checksums import canonical_line
from .copy import COPY_TABLES, DEFAULT_BATCH_SIZE, Source, copy_database
from .errors import CopyError, CopyInterrupted, VerificationError
from .results import CopyResult, Mode, ProgressCallback, TableCopy

__all__ = [
    "COPY_TABLES",
    "DEFAULT_BATCH_SIZE",
    "ROLLUP_COLUMNS",
    "ROLLUP_TABLE",
    "CopyError",
    "CopyInterrupted",
    "CopyResult",
    "Mode",
    "ProgressCallback",
    "Source",
    "TableCopy",
    "VerificationError",
    "canonical_line",
    "copy_database",
]
