-- The change feed (orchestrator_db.events): every insert, update and delete of the five tables
-- appends one row here, in commit order (SQLite has one writer at a time), so a reader replays
-- with `WHERE position > ?`. The trigger stores ids and filter fields only; the feed reads the
-- row itself back by id when it delivers the event, so log ingestion pays one small append.
-- position is the rowid: prune_changes always keeps the newest row, so no position is reused.
CREATE TABLE IF NOT EXISTS changes (
    position   INTEGER PRIMARY KEY,
    table_name TEXT NOT NULL,
    op         TEXT NOT NULL,
    row_id     TEXT NOT NULL,
    session_id TEXT,
    agent_id   TEXT,
    log_level  TEXT,
    created_at TEXT NOT NULL
);

-- The triggers that fill this table are not written here: store/migrations.py generates them
-- from orchestrator_db.tables.CHANGE_FIELDS (one template per engine, applied to each table)
-- and appends them to this migration.
