-- The change feed (orchestrator_db.events): every insert, update and delete of the five tables
-- appends one row per changed row here. The trigger stores ids and filter fields only; the feed
-- reads the row itself back by id when it delivers the event, so log ingestion pays one small
-- append.
-- SQLite: rows arrive in commit order (one writer at a time), so a reader replays with
-- `WHERE position > ?`; position is the rowid, and prune_changes always keeps the newest row, so
-- no position is reused.
-- PostgreSQL: statement-level triggers with transition tables (a 20k-row COPY costs one
-- INSERT ... SELECT); readers poll the newest position (they were woken by NOTIFY until
-- migration 0006). Positions come from a sequence, so concurrent transactions may commit them out of
-- order; the reader holds back at a gap until the transactions that could own it have ended.
CREATE TABLE IF NOT EXISTS changes (
    position   {serial},
    table_name {text} NOT NULL,
    op         {text} NOT NULL,
    row_id     {uuid} NOT NULL,
    session_id {text},
    agent_id   {uuid},
    log_level  {text},
    created_at {time} NOT NULL{default_now}
);

-- The triggers that fill this table are not written here: store/migrations.py generates them
-- from orchestrator_db.tables.CHANGE_FIELDS (one template per engine, applied to each table)
-- and appends them to this migration.
