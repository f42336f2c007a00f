-- orchestrator-db initial schema. One template for both engines: store/migrations.py fills
-- each placeholder (a word in braces) with the engine's own word (SQLITE_WORDS, POSTGRES_WORDS).
-- SQLite: ids are canonical lowercase UUID strings; timestamps are fixed-shape UTC ISO 8601
-- strings (2026-11-23T11:50:12.123456+00:00), so text order is time order; JSON is TEXT.
-- PostgreSQL: native uuid, timestamptz and jsonb.

CREATE TABLE IF NOT EXISTS orchestrator_agents (
    id            {id},
    name          {text} NOT NULL UNIQUE,
    description   {text},
    agent_type    {text},
    capabilities  {json},
    default_model {text},
    status        {text} NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'inactive', 'archived')),
    metadata      {json},
    created_at    {time} NOT NULL,
    updated_at    {time} NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_orchestrator_agents_created ON orchestrator_agents (created_at, id);

CREATE TABLE IF NOT EXISTS agents (
    id                    {id},
    orchestrator_agent_id {uuid} NOT NULL REFERENCES orchestrator_agents (id),
    session_id            {text} NOT NULL,
    name                  {text},
    model                 {text},
    status                {text} NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'executing', 'completed', 'failed', 'cancelled')),
    metadata              {json},
    created_at            {time} NOT NULL,
    updated_at            {time} NOT NULL,
    started_at            {time},
    completed_at          {time}
);
CREATE INDEX IF NOT EXISTS ix_agents_session ON agents (session_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_agents_orchestrator ON agents (orchestrator_agent_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_agents_created ON agents (created_at, id);

CREATE TABLE IF NOT EXISTS prompts (
    id            {id},
    agent_id      {uuid} NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    content       {text} NOT NULL,
    response      {text},
    model         {text},
    status        {text} NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'completed', 'failed')),
    tokens_input  {bigint} NOT NULL DEFAULT 0 CHECK (tokens_input >= 0),
    tokens_output {bigint} NOT NULL DEFAULT 0 CHECK (tokens_output >= 0),
    cost_usd      {double} NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    created_at    {time} NOT NULL,
    completed_at  {time}
);
CREATE INDEX IF NOT EXISTS ix_prompts_agent ON prompts (agent_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_prompts_created ON prompts (created_at, id);

CREATE TABLE IF NOT EXISTS agent_logs (
    id         {id},
    agent_id   {uuid} NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    log_level  {text} NOT NULL DEFAULT 'INFO'
               CHECK (log_level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')),
    log_type   {text} NOT NULL DEFAULT 'event',
    message    {text} NOT NULL,
    details    {json},
    created_at {time} NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_agent_logs_agent ON agent_logs (agent_id, created_at, id);
CREATE INDEX IF NOT EXISTS ix_agent_logs_created ON agent_logs (created_at, id);
CREATE INDEX IF NOT EXISTS ix_agent_logs_level ON agent_logs (log_level, created_at, id);

CREATE TABLE IF NOT EXISTS system_logs (
    id         {id},
    log_level  {text} NOT NULL DEFAULT 'INFO'
               CHECK (log_level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')),
    source     {text},
    message    {text} NOT NULL,
    details    {json},
    created_at {time} NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_system_logs_created ON system_logs (created_at, id);
CREATE INDEX IF NOT EXISTS ix_system_logs_level ON system_logs (log_level, created_at, id);
CREATE INDEX IF NOT EXISTS ix_system_logs_source ON system_logs (source, created_at, id);
