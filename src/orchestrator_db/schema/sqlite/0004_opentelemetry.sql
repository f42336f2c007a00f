-- OpenTelemetry ingest (design §11), SQLite dialect.
-- agents.parent_agent_id: the sub-agent tree (deleting a parent leaves its children as roots).
-- trace_id / span_id (lowercase hex, 32 and 16 digits): the span a record was made from; unique
-- per table where set, so a span sent twice is recognised. SQLite can add a column with a
-- REFERENCES clause when its default is NULL; the constraint is enforced like any other.
ALTER TABLE agents ADD COLUMN parent_agent_id TEXT REFERENCES agents (id) ON DELETE SET NULL;
ALTER TABLE agents ADD COLUMN trace_id TEXT;
ALTER TABLE agents ADD COLUMN span_id TEXT;
ALTER TABLE prompts ADD COLUMN trace_id TEXT;
ALTER TABLE prompts ADD COLUMN span_id TEXT;
ALTER TABLE agent_logs ADD COLUMN trace_id TEXT;
ALTER TABLE agent_logs ADD COLUMN span_id TEXT;

CREATE INDEX IF NOT EXISTS ix_agents_parent ON agents (parent_agent_id, created_at, id)
    WHERE parent_agent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_agents_trace ON agents (trace_id) WHERE trace_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS ux_agents_span ON agents (trace_id, span_id)
    WHERE span_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS ux_prompts_span ON prompts (trace_id, span_id)
    WHERE span_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS ux_agent_logs_span ON agent_logs (trace_id, span_id)
    WHERE span_id IS NOT NULL;

-- Every span received, with its parent and the agent run that holds its records: how spans
-- that arrive before their parents (in other requests) are linked once the parent arrives, and
-- how a span sent again is recognised whatever it became. Rows go with their agent.
CREATE TABLE IF NOT EXISTS otlp_spans (
    span_id        TEXT NOT NULL,
    trace_id       TEXT NOT NULL,
    parent_span_id TEXT,
    agent_id       TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    is_agent       INTEGER NOT NULL DEFAULT 0,  -- the span is an agent run (agent_id is its own)
    orphan         INTEGER NOT NULL DEFAULT 0,  -- its parent had not arrived when it did
    PRIMARY KEY (span_id, trace_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_otlp_spans_agent ON otlp_spans (agent_id);
CREATE INDEX IF NOT EXISTS ix_otlp_spans_orphans ON otlp_spans (parent_span_id) WHERE orphan;
