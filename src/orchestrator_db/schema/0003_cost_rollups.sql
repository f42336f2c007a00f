-- Daily cost rollups: what pruned prompts cost, so pruning never loses money (design §4).
-- One row per (UTC day, session, agent, orchestrator agent, model) — every key cost_summary
-- groups by — kept when prune() deletes the prompts it sums. Deleting an agent deletes its
-- rollups, as it deletes its prompts. The key is not UNIQUE (model may be NULL): prune() adds to
-- the existing row, and two rows with one key (concurrent prunes) would still sum correctly.

CREATE TABLE IF NOT EXISTS cost_rollups (
    day                   {date} NOT NULL,  -- the UTC day the prompts were created (YYYY-MM-DD)
    session_id            {text} NOT NULL,
    agent_id              {uuid} NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    orchestrator_agent_id {uuid} NOT NULL,
    model                 {text},
    prompts               {bigint} NOT NULL DEFAULT 0 CHECK (prompts >= 0),
    tokens_input          {bigint} NOT NULL DEFAULT 0 CHECK (tokens_input >= 0),
    tokens_output         {bigint} NOT NULL DEFAULT 0 CHECK (tokens_output >= 0),
    cost_usd              {double} NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    updated_at            {time} NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_cost_rollups_agent ON cost_rollups (agent_id, day);
CREATE INDEX IF NOT EXISTS ix_cost_rollups_session ON cost_rollups (session_id);
CREATE INDEX IF NOT EXISTS ix_cost_rollups_day ON cost_rollups (day);
