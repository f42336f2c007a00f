-- A session keeps its place in /api/sessions (issue 12 item 5: a true keyset cursor). Up to
-- here sessions.started_at followed the earliest agent's created_at: an agent created earlier
-- than the first (OpenTelemetry spans arrive children first; imports and copies write old
-- times) moved the session later in the order, and deleting its first agent moved it, so a
-- client following next_cursor saw that session twice or never. Now the key is set when a
-- session's first agent is recorded and kept while the session has agents; a session's
-- summary still reports its earliest agent as first_activity.
--
-- The triggers are not written here: store/aggregates.py renders them (the same text
-- migration 0005 now creates) and store/migrations.py appends them to this migration.

-- And the first and last days: up to here PostgreSQL's driver sent 0001-01-01 and 9999-12-31
-- as -infinity and infinity (store/postgres_driver.py now sends the days), so a prune of
-- prompts on either day kept their cost under a day with no date. On SQLite no row matches.
UPDATE cost_rollups SET day = '9999-12-31' WHERE day = 'infinity';
UPDATE cost_rollups SET day = '0001-01-01' WHERE day = '-infinity';
