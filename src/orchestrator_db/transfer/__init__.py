"""Copy a whole orchestrator database to another one: SQLite → PostgreSQL, and back (design §9).

How it keeps "nothing lost, nothing twice":

- Tables go in dependency order (parents first), rows in the stable order (created_at, id), in
  batches; each batch is one transaction on the destination, committed in order, written with
  the store's bulk load (``Store.load_batches``: text COPY on two connections on PostgreSQL, the
  next batch while the previous one commits; ``executemany`` on SQLite). Ids and timestamps are
  copied, not re-made.
- So an interrupted copy leaves each destination table holding a *prefix* of the source table.
  Re-running checks that it is one (same number of rows up to the destination's last (created_at,
  id), and that row exists in the source) and continues after it: resumable, never duplicated.
- What each row would update goes after the load (``Store.begin_bulk_load`` /
  ``end_bulk_load``): on PostgreSQL the tables' secondary indexes and foreign keys are dropped
  and their change-feed triggers disabled, then rebuilt (indexes concurrently) and enabled. The
  statements that restore them are recorded in the destination in the same transaction, so a
  copy that stops, even killed, leaves them to the next copy (a merge, too, runs them first).
- Copied rows are history, not news: the destination's change log gets no row for them. It
  gets the source's newest change row instead, so its positions go on after the source's (a
  follower may move from the source to the destination keeping its position).
- A destination holding anything else is refused unless ``merge=True``, which adds only the rows
  whose ids the destination lacks (``ON CONFLICT (id) DO NOTHING``), the normal way: its
  followers see them as changes.
- Verification compares a row count and an order-free digest of every table
  (``store/digest.py``), each side computed by its own store while the other work goes on:
  PostgreSQL hashes in SQL (a parallel scan, while the indexes are rebuilt), SQLite in processes
  of their own (the source's while its rows are copied). Only if they differ are both sides read
  again and compared row by row, which raises ``VerificationError`` naming the table and the
  first differing row. A merge looks every source row up in the destination instead.
- ``cost_rollups`` (no id: one row per day, session, agent and model) is copied after the five
  record tables as a whole, and compared as a multiset of rows.
- ``otlp_spans`` (no id, no time: the spans received over OpenTelemetry and the agent run
  holding each) goes last, in key order, batch by batch, with ``ON CONFLICT DO NOTHING`` on its
  key, so a re-run or a merge adds only what is missing; every source row is then looked up in
  the destination (``spans``).

Measured (benchmarks/bench_copy.py, 1M agent_logs rows SQLite → PostgreSQL, pgloader 3.6.9 in
the same run, on a 2-core machine shared with other work): the copy, verified, took 14-34 s
where pgloader took 19-45 s, 1.04-1.68× per run (it was 0.48× before: 63 s against 30 s),
in 141 MB with its digest process against pgloader's 450-960 MB. Its CPU, in core-seconds:
the copy process about 6, the source's digest about 8.5 (Python), PostgreSQL about 5 for the
COPY, 2.5 for the indexes and keys and 5 for its digest; on a quiet machine the load takes
about 12.5 s and the rebuild and the destination's digest about 5.5 s more.

Stop writers on the source while it is copied: rows changed after they were copied are reported
by the verification, not copied again. Nothing else should write to the destination meanwhile:
while its change-feed triggers are off, its followers would not see those writes.

The modules, by concern: ``checksums`` (canonical lines, row-by-row comparison), ``rows`` (read,
convert, write), ``rollups`` (``cost_rollups``), ``spans`` (``otlp_spans``), ``verify``
(verification), ``copy`` (the copy loop, resume and merge), ``results`` and ``errors`` (what a
copy reports).
"""

from ..tables import ROLLUP_COLUMNS, ROLLUP_TABLE
from .checksums import canonical_line
from .copy import COPY_TABLES, DEFAULT_BATCH_SIZE, Source, copy_database
from .errors import CopyError, CopyInterrupted, MergeConflict, VerificationError
from .results import CopyResult, Mode, ProgressCallback, TableCopy

__all__ = [
    "COPY_TABLES",
    "DEFAULT_BATCH_SIZE",
    "ROLLUP_COLUMNS",
    "ROLLUP_TABLE",
    "CopyError",
    "CopyInterrupted",
    "CopyResult",
    "MergeConflict",
    "Mode",
    "ProgressCallback",
    "Source",
    "TableCopy",
    "VerificationError",
    "canonical_line",
    "copy_database",
]
