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

CREATE TRIGGER IF NOT EXISTS changes_orchestrator_agents_insert AFTER INSERT ON orchestrator_agents BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('orchestrator_agents', 'insert', NEW.id, NULL, NULL, NULL,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_orchestrator_agents_update AFTER UPDATE ON orchestrator_agents BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('orchestrator_agents', 'update', NEW.id, NULL, NULL, NULL,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_orchestrator_agents_delete AFTER DELETE ON orchestrator_agents BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('orchestrator_agents', 'delete', OLD.id, NULL, NULL, NULL,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_agents_insert AFTER INSERT ON agents BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('agents', 'insert', NEW.id, NEW.session_id, NEW.id, NULL,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_agents_update AFTER UPDATE ON agents BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('agents', 'update', NEW.id, NEW.session_id, NEW.id, NULL,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_agents_delete AFTER DELETE ON agents BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('agents', 'delete', OLD.id, OLD.session_id, OLD.id, NULL,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_prompts_insert AFTER INSERT ON prompts BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('prompts', 'insert', NEW.id, NULL, NEW.agent_id, NULL,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_prompts_update AFTER UPDATE ON prompts BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('prompts', 'update', NEW.id, NULL, NEW.agent_id, NULL,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_prompts_delete AFTER DELETE ON prompts BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('prompts', 'delete', OLD.id, NULL, OLD.agent_id, NULL,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_agent_logs_insert AFTER INSERT ON agent_logs BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('agent_logs', 'insert', NEW.id, NULL, NEW.agent_id, NEW.log_level,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_agent_logs_update AFTER UPDATE ON agent_logs BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('agent_logs', 'update', NEW.id, NULL, NEW.agent_id, NEW.log_level,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_agent_logs_delete AFTER DELETE ON agent_logs BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('agent_logs', 'delete', OLD.id, NULL, OLD.agent_id, OLD.log_level,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_system_logs_insert AFTER INSERT ON system_logs BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('system_logs', 'insert', NEW.id, NULL, NULL, NEW.log_level,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_system_logs_update AFTER UPDATE ON system_logs BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('system_logs', 'update', NEW.id, NULL, NULL, NEW.log_level,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
CREATE TRIGGER IF NOT EXISTS changes_system_logs_delete AFTER DELETE ON system_logs BEGIN
    INSERT INTO changes (table_name, op, row_id, session_id, agent_id, log_level, created_at)
    VALUES ('system_logs', 'delete', OLD.id, NULL, NULL, OLD.log_level,
            strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
END;
