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

CREATE OR REPLACE FUNCTION orchestrator_db_changes_orchestrator_agents() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'orchestrator_agents', 'delete', r.id, NULL, NULL, NULL
        FROM old_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    ELSIF TG_OP = 'UPDATE' THEN
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'orchestrator_agents', 'update', r.id, NULL, NULL, NULL
        FROM new_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    ELSE
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'orchestrator_agents', 'insert', r.id, NULL, NULL, NULL
        FROM new_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    END IF;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('orchestrator_db_changes', newest::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER changes_orchestrator_agents_insert AFTER INSERT ON orchestrator_agents
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_orchestrator_agents();
CREATE OR REPLACE TRIGGER changes_orchestrator_agents_update AFTER UPDATE ON orchestrator_agents
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_orchestrator_agents();
CREATE OR REPLACE TRIGGER changes_orchestrator_agents_delete AFTER DELETE ON orchestrator_agents
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_orchestrator_agents();

CREATE OR REPLACE FUNCTION orchestrator_db_changes_agents() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'agents', 'delete', r.id, r.session_id, r.id, NULL
        FROM old_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    ELSIF TG_OP = 'UPDATE' THEN
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'agents', 'update', r.id, r.session_id, r.id, NULL
        FROM new_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    ELSE
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'agents', 'insert', r.id, r.session_id, r.id, NULL
        FROM new_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    END IF;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('orchestrator_db_changes', newest::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER changes_agents_insert AFTER INSERT ON agents
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_agents();
CREATE OR REPLACE TRIGGER changes_agents_update AFTER UPDATE ON agents
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_agents();
CREATE OR REPLACE TRIGGER changes_agents_delete AFTER DELETE ON agents
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_agents();

CREATE OR REPLACE FUNCTION orchestrator_db_changes_prompts() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'prompts', 'delete', r.id, NULL, r.agent_id, NULL
        FROM old_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    ELSIF TG_OP = 'UPDATE' THEN
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'prompts', 'update', r.id, NULL, r.agent_id, NULL
        FROM new_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    ELSE
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'prompts', 'insert', r.id, NULL, r.agent_id, NULL
        FROM new_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    END IF;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('orchestrator_db_changes', newest::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER changes_prompts_insert AFTER INSERT ON prompts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_prompts();
CREATE OR REPLACE TRIGGER changes_prompts_update AFTER UPDATE ON prompts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_prompts();
CREATE OR REPLACE TRIGGER changes_prompts_delete AFTER DELETE ON prompts
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_prompts();

CREATE OR REPLACE FUNCTION orchestrator_db_changes_agent_logs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'agent_logs', 'delete', r.id, NULL, r.agent_id, r.log_level
        FROM old_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    ELSIF TG_OP = 'UPDATE' THEN
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'agent_logs', 'update', r.id, NULL, r.agent_id, r.log_level
        FROM new_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    ELSE
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'agent_logs', 'insert', r.id, NULL, r.agent_id, r.log_level
        FROM new_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    END IF;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('orchestrator_db_changes', newest::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER changes_agent_logs_insert AFTER INSERT ON agent_logs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_agent_logs();
CREATE OR REPLACE TRIGGER changes_agent_logs_update AFTER UPDATE ON agent_logs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_agent_logs();
CREATE OR REPLACE TRIGGER changes_agent_logs_delete AFTER DELETE ON agent_logs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_agent_logs();

CREATE OR REPLACE FUNCTION orchestrator_db_changes_system_logs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'system_logs', 'delete', r.id, NULL, NULL, r.log_level
        FROM old_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    ELSIF TG_OP = 'UPDATE' THEN
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'system_logs', 'update', r.id, NULL, NULL, r.log_level
        FROM new_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    ELSE
        WITH added AS (
        INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level)
        SELECT 'system_logs', 'insert', r.id, NULL, NULL, r.log_level
        FROM new_rows AS r
        RETURNING position
        ) SELECT max(position) INTO newest FROM added;
    END IF;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('orchestrator_db_changes', newest::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER changes_system_logs_insert AFTER INSERT ON system_logs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_system_logs();
CREATE OR REPLACE TRIGGER changes_system_logs_update AFTER UPDATE ON system_logs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_system_logs();
CREATE OR REPLACE TRIGGER changes_system_logs_delete AFTER DELETE ON system_logs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_changes_system_logs();
