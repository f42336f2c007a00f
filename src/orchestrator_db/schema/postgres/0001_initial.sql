-- orchestrator-db initial schema, PostgreSQL dialect (native uuid, timestamptz, jsonb).

CREATE TABLE IF NOT EXISTS orchestrator_agents (
    id            uuid PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    description   text,
    agent_type    text,
    capabilities  jsonb,
    default_model text,
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'inactive', 'archived')),
    metadata      jsonb,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_orchestrator_agents_created ON orchestrator_agents (created_at, id);

CREATE TABLE IF NOT EXISTS agents (
    id                    uuid PRIMARY KEY,
    orchestrator_agent_id uuid NOT NULL REFERENCES orchestrator_agents (id),
    session_id            text NOT NULL,
    name                  text,
    model                 text,
    status                text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'executing', 'completed', 'failed', 'cancelled')),
    metadata              jsonb,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    started_at            timestamptz,
    completed_at          timestamptz
);
CREATE INDEX IF NOT EXISTS ix_agents_session ON agents (session_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_agents_orchestrator ON agents (orchestrator_agent_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_agents_created ON agents (created_at, id);

CREATE TABLE IF NOT EXISTS prompts (
    id            uuid PRIMARY KEY,
    agent_id      uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    content       text NOT NULL,
    response      text,
    model         text,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'completed', 'failed')),
    tokens_input  bigint NOT NULL DEFAULT 0 CHECK (tokens_input >= 0),
    tokens_output bigint NOT NULL DEFAULT 0 CHECK (tokens_output >= 0),
    cost_usd      double precision NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    created_at    timestamptz NOT NULL,
    completed_at  timestamptz
);
CREATE INDEX IF NOT EXISTS ix_prompts_agent ON prompts (agent_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_prompts_created ON prompts (created_at, id);

CREATE TABLE IF NOT EXISTS agent_logs (
    id         uuid PRIMARY KEY,
    agent_id   uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    log_level  text NOT NULL DEFAULT 'INFO'
               CHECK (log_level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')),
    log_type   text NOT NULL DEFAULT 'event',
    message    text NOT NULL,
    details    jsonb,
    created_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_agent_logs_agent ON agent_logs (agent_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_agent_logs_created ON agent_logs (created_at, id);
CREATE INDEX IF NOT EXISTS ix_agent_logs_level ON agent_logs (log_level, created_at, id);

CREATE TABLE IF NOT EXISTS system_logs (
    id         uuid PRIMARY KEY,
    log_level  text NOT NULL DEFAULT 'INFO'
               CHECK (log_level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')),
    source     text,
    message    text NOT NULL,
    details    jsonb,
    created_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_system_logs_created ON system_logs (created_at, id);
CREATE INDEX IF NOT EXISTS ix_system_logs_level ON system_logs (log_level, created_at, id);
CREATE INDEX IF NOT EXISTS ix_system_logs_source ON system_logs (source, created_at, id);
