-- A session's last activity reads each of its agents' newest prompt event (created or
-- completed, whichever is later) with one probe of this index, where it took two before
-- (ix_prompts_agent, and ix_prompts_agent_completed from 0005): /api/sessions reads it for
-- every agent of a page (issue 12 item 5). summaries.py writes the expression exactly as here,
-- which is how both engines match a query to an expression index. Comparing with > leaves a
-- NULL completed_at to created_at on both engines (SQLite's max() would return NULL).
-- It replaces ix_prompts_agent_completed, which nothing else reads, so a prompt write keeps
-- the same number of indexes to update.
CREATE INDEX IF NOT EXISTS ix_prompts_agent_activity ON prompts
    (agent_id, (CASE WHEN completed_at > created_at THEN completed_at ELSE created_at END));
DROP INDEX IF EXISTS ix_prompts_agent_completed;
