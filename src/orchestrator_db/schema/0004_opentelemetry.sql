-- OpenTelemetry ingest (design §11).
-- agents.parent_agent_id: the sub-agent tree (deleting a parent leaves its children as roots).
-- trace_id / span_id (lowercase hex, 32 and 16 digits): the span a record was made from; unique
-- per table where set, so a span sent twice is recognised. SQLite can add a column with a
-- REFERENCES clause when its default is NULL; the constraint is enforced like any other.
ALTER TABLE agents {add_column} parent_agent_id {uuid}
    REFERENCES agents (id) ON DELETE SET NULL;
ALTER TABLE agents {add_column} trace_id {text};
ALTER TABLE agents {add_column} span_id {text};
ALTER TABLE prompts {add_column} trace_id {text};
ALTER TABLE prompts {add_column} span_id {text};
ALTER TABLE agent_logs {add_column} trace_id {text};
ALTER TABLE agent_logs {add_column} span_id {text};

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
    span_id        {text} NOT NULL,
    trace_id       {text} NOT NULL,
    parent_span_id {text},
    agent_id       {uuid} NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    is_agent       {bool} NOT NULL DEFAULT {false},  -- the span is an agent run (agent_id is its own)
    orphan         {bool} NOT NULL DEFAULT {false},  -- its parent had not arrived when it did
    PRIMARY KEY (span_id, trace_id)
){without_rowid};
CREATE INDEX IF NOT EXISTS ix_otlp_spans_agent ON otlp_spans (agent_id);
CREATE INDEX IF NOT EXISTS ix_otlp_spans_orphans ON otlp_spans (parent_span_id) WHERE orphan;
