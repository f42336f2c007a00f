-- Aggregates kept in the transaction of every write, so the dashboard and /api/costs read a
-- few rows instead of the whole history (issue 12 item 5).
--
-- sessions: one row per session that has agents; started_at is its first agent's created_at.
-- /api/sessions pages it by (started_at DESC, session_id DESC) with a keyset cursor: activity
-- never moves a session in that order, so following the cursor repeats and skips none.
-- session_id compares byte-wise on both engines (COLLATE "C" on PostgreSQL), as the cursor does.
-- cost_days: the live prompts per (UTC day, agent, model), with the agent's session and
-- orchestrator agent. prune() folds the prompts it deletes into cost_rollups (0003) while the
-- delete takes them out of here, so the two never hold the same prompt.
-- cost_totals: cost_days and cost_rollups together per (UTC day, orchestrator agent, model): a
-- few rows a day, so all history by day, model or orchestrator agent reads hundreds of rows.
-- Kept on SQLite only (one writer at a time): on PostgreSQL every prompt write would
-- queue on these few rows, so there the same groupings read cost_days (~30 ms at 400k prompts).
-- (model IS NULL, coalesce(model, '')) keys a NULL model apart from '' in a plain unique index.
--
-- The triggers that keep them, the backfill of an existing database and the row_estimates
-- view (cheap counts for /api/stats) differ by engine: store/aggregates.py renders them and
-- store/migrations.py appends them to this migration.

CREATE TABLE IF NOT EXISTS sessions (
    session_id {text}{bytewise} NOT NULL PRIMARY KEY,
    started_at {time} NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_sessions_started ON sessions (started_at, session_id);

CREATE TABLE IF NOT EXISTS cost_days (
    agent_id              {uuid} NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    day                   {date} NOT NULL,  -- the UTC day the prompts were created
    model                 {text},
    session_id            {text}{bytewise} NOT NULL,
    orchestrator_agent_id {uuid} NOT NULL,
    prompts               {bigint} NOT NULL,
    tokens_input          {bigint} NOT NULL,
    tokens_output         {bigint} NOT NULL,
    cost_usd              {double} NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_cost_days_key
    ON cost_days (agent_id, day, (model IS NULL), coalesce(model, ''));
CREATE INDEX IF NOT EXISTS ix_cost_days_day ON cost_days (day);
CREATE INDEX IF NOT EXISTS ix_cost_days_session ON cost_days (session_id);

CREATE TABLE IF NOT EXISTS cost_totals (
    day                   {date} NOT NULL,
    orchestrator_agent_id {uuid} NOT NULL,
    model                 {text},
    prompts               {bigint} NOT NULL,
    tokens_input          {bigint} NOT NULL,
    tokens_output         {bigint} NOT NULL,
    cost_usd              {double} NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_cost_totals_key
    ON cost_totals (day, orchestrator_agent_id, (model IS NULL), coalesce(model, ''));

-- A session's last activity reads its agents' newest prompt completion by index, as it reads
-- their newest prompt and log line (ix_prompts_agent, ix_agent_logs_agent).
CREATE INDEX IF NOT EXISTS ix_prompts_agent_completed ON prompts (agent_id, completed_at);
