-- The change feed (orchestrator_db.events), PostgreSQL dialect: every insert, update and delete
-- of the five tables appends one row per changed row here and wakes listeners with
-- NOTIFY orchestrator_db_changes (payload: the newest position). Statement-level triggers with
-- transition tables: a 20k-row COPY costs one INSERT ... SELECT and one NOTIFY, not 20k calls.
-- Positions come from a sequence, so concurrent transactions may commit them out of order; the
-- reader (events.py) holds back at a gap until the transactions that could own it have ended.
CREATE TABLE IF NOT EXISTS changes (
    position   bigserial PRIMARY KEY,
    table_name text NOT NULL,
    op         text NOT NULL,
    row_id     uuid NOT NULL,
    session_id text,
    agent_id   uuid,
    log_level  text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The triggers that fill this table are not written here: store/migrations.py generates them
-- from orchestrator_db.tables.CHANGE_FIELDS (one template per engine, applied to each table)
-- and appends them to this migration.
