-- orchestrator-db initial schema, SQLite dialect.
-- Ids are canonical lowercase UUID strings; timestamps are fixed-shape UTC ISO 8601 strings
-- (2026-11-23T11:50:12.123456+00:00), so text order is time order; JSON is stored as TEXT.

CREATE TABLE IF NOT EXISTS orchestrator_agents (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL UNIQUE,
    description   TEXT,
    agent_type    TEXT,
    capabilities  TEXT,
    default_model TEXT,
    status        TEXT NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'inactive', 'archived')),
    metadata      TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_orchestrator_agents_created ON orchestrator_agents (created_at, id);

CREATE TABLE IF NOT EXISTS agents (
    id                    TEXT PRIMARY KEY NOT NULL,
    orchestrator_agent_id TEXT NOT NULL REFERENCES orchestrator_agents (id),
    session_id            TEXT NOT NULL,
    name                  TEXT,
    model                 TEXT,
    status                TEXT NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'executing', 'completed', 'failed', 'cancelled')),
    metadata              TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    started_at            TEXT,
    completed_at          TEXT
);
CREATE INDEX IF NOT EXISTS ix_agents_session ON agents (session_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_agents_orchestrator ON agents (orchestrator_agent_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_agents_created ON agents (created_at, id);

CREATE TABLE IF NOT EXISTS prompts (
    id            TEXT PRIMARY KEY NOT NULL,
    agent_id      TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    content       TEXT NOT NULL,
    response      TEXT,
    model         TEXT,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'completed', 'failed')),
    tokens_input  INTEGER NOT NULL DEFAULT 0 CHECK (tokens_input >= 0),
    tokens_output INTEGER NOT NULL DEFAULT 0 CHECK (tokens_output >= 0),
    cost_usd      REAL NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    created_at    TEXT NOT NULL,
    completed_at  TEXT
);
CREATE INDEX IF NOT EXISTS ix_prompts_agent ON prompts (agent_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_prompts_created ON prompts (created_at, id);

CREATE TABLE IF NOT EXISTS agent_logs (
    id         TEXT PRIMARY KEY NOT NULL,
    agent_id   TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    log_level  TEXT NOT NULL DEFAULT 'INFO'
               CHECK (log_level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')),
    log_type   TEXT NOT NULL DEFAULT 'event',
    message    TEXT NOT NULL,
    details    TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_agent_logs_agent ON agent_logs (agent_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_agent_logs_created ON agent_logs (created_at, id);
CREATE INDEX IF NOT EXISTS ix_agent_logs_level ON agent_logs (log_level, created_at, id);

CREATE TABLE IF NOT EXISTS system_logs (
    id         TEXT PRIMARY KEY NOT NULL,
    log_level  TEXT NOT NULL DEFAULT 'INFO'
               CHECK (log_level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')),
    source     TEXT,
    message    TEXT NOT NULL,
    details    TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_system_logs_created ON system_logs (created_at, id);
CREATE INDEX IF NOT EXISTS ix_system_logs_level ON system_logs (log_level, created_at, id);
CREATE INDEX IF NOT EXISTS ix_system_logs_source ON system_logs (source, created_at, id);
