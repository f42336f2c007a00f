"""Migration 0005's engine-specific half: the triggers that keep the aggregates, the backfill
of an existing database and the ``row_estimates`` view (schema/0005_aggregates.sql has the
tables, the same on both engines).

Three totals are kept in the transaction of every write:

- ``sessions`` from ``agents``: one row per session, keyed by the created_at of the first agent
  recorded in it, which never changes while the session has agents (migration 0008: an agent
  created earlier, or the first one deleted, used to move the key, and a pager following
  /api/sessions saw that session twice or not at all).
- ``cost_days`` from ``prompts``: the live prompts per (UTC day, agent, model), with the
  agent's session and orchestrator agent.
- ``cost_totals`` from ``cost_days`` and ``cost_rollups``: every prompt ever recorded per (UTC
  day, orchestrator agent, model). prune() moves a prompt from the first to the second, so
  the two sum to the same. SQLite only: it has one writer at a time anyway, while on
  PostgreSQL these few hot rows would serialise concurrent writers (see ``_postgres``).

SQLite gets row-level triggers; PostgreSQL statement-level ones with transition tables, so a
COPY of 20,000 prompts costs one INSERT ... SELECT per total, not 20,000. Adding a row's counts
to a total and taking them out again are one template each per engine, rendered for each
(source, total) pair instead of pasted. A total whose prompts fall to zero is deleted, so no
rounding residue of its cost outlives it. SQL text only: no values are substituted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from ..config import Dialect

COUNTS = ("prompts", "tokens_input", "tokens_output", "cost_usd")


@dataclass(frozen=True)
class _Feed:
    """How one source table feeds one total: its key and counts as expressions of a row."""

    source: str
    total: str
    keys: tuple[str, ...]  # the total's key columns (model last: NULL is a key of its own)
    key_of: dict[str, str]  # key column -> expression of the source row ("{r}" is the row)
    counts: dict[str, str]  # count column -> expression of the source row
    copied: dict[str, str]  # columns taken from the prompt's agent ("a") when a total is new


def _feeds(day_of: str) -> list[_Feed]:
    own = {c: "{r}." + c for c in COUNTS}
    totals = [_Feed(table, "cost_totals", ("day", "orchestrator_agent_id", "model"),
                    {"day": "{r}.day", "orchestrator_agent_id": "{r}.orchestrator_agent_id",
                     "model": "{r}.model"}, own, {})
              for table in ("cost_days", "cost_rollups")]
    days = _Feed("prompts", "cost_days", ("agent_id", "day", "model"),
                 {"agent_id": "{r}.agent_id", "day": day_of, "model": "{r}.model"},
                 {"prompts": "1", "tokens_input": "{r}.tokens_input",
                  "tokens_output": "{r}.tokens_output", "cost_usd": "{r}.cost_usd"},
                 {"session_id": "a.session_id",
                  "orchestrator_agent_id": "a.orchestrator_agent_id"})
    return [days, *totals]


def _conflict(feed: _Feed) -> str:
    """The unique index of a total, as an ON CONFLICT target (schema/0005_aggregates.sql)."""
    *plain, model = feed.keys
    return f"{', '.join(plain)}, ({model} IS NULL), coalesce({model}, '')"


def _same_key(feed: _Feed, row: str, alias: str = "") -> str:
    """The total's key equals the key of ``row`` (model compared NULL-safely)."""
    prefix = f"{alias}." if alias else ""
    parts = []
    for key in feed.keys:
        value = feed.key_of[key].format(r=row)
        if key == "model":
            parts.append(f"({prefix}{key} IS NULL) = ({value} IS NULL) "
                         f"AND coalesce({prefix}{key}, '') = coalesce({value}, '')")
        else:
            parts.append(f"{prefix}{key} = {value}")
    return " AND ".join(parts)


def aggregate_sql(dialect: Dialect) -> str:
    """Return migration 0005's triggers, backfill and row estimates for one engine."""
    if dialect is Dialect.SQLITE:
        return _sqlite()
    if dialect is Dialect.POSTGRES:
        return _postgres()
    assert_never(dialect)  # pragma: no cover


# SQLite -----------------------------------------------------------------------------------------
_SQLITE_ADD = """\
    INSERT INTO {total} ({columns}) SELECT {values}{source}
    ON CONFLICT ({conflict}) DO UPDATE SET {sums};
"""
_SQLITE_TAKE = """\
    UPDATE {total} SET {differences} WHERE {same};
    DELETE FROM {total} WHERE {same} AND prompts <= 0;
"""


def _sqlite_add(feed: _Feed, row: str) -> str:
    columns = [*feed.keys, *feed.copied, *COUNTS]
    values = [feed.key_of[k].format(r=row) for k in feed.keys] + list(feed.copied.values()) + [
        feed.counts[c].format(r=row) for c in COUNTS]
    # The prompt's agent gives its session and orchestrator agent (WHERE also keeps SQLite
    # from reading ON CONFLICT as a join's ON).
    source = (f" FROM agents a WHERE a.id = {row}.agent_id" if feed.copied else " WHERE true")
    return _SQLITE_ADD.format(
        total=feed.total, columns=", ".join(columns), values=", ".join(values), source=source,
        conflict=_conflict(feed),
        sums=", ".join(f"{c} = {c} + excluded.{c}" for c in COUNTS))


def _sqlite_take(feed: _Feed, row: str) -> str:
    differences = [f"{c} = {c} - {feed.counts[c].format(r=row)}" for c in COUNTS[:-1]]
    differences.append(f"cost_usd = max(cost_usd - {feed.counts['cost_usd'].format(r=row)}, 0.0)")
    return _SQLITE_TAKE.format(total=feed.total, differences=", ".join(differences),
                               same=_same_key(feed, row))


_SQLITE_TRIGGER = """\
CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {source} BEGIN
{body}END;
"""

_SQLITE_SESSIONS = """\
CREATE TRIGGER IF NOT EXISTS sessions_agents_insert AFTER INSERT ON agents BEGIN
{join}END;
CREATE TRIGGER IF NOT EXISTS sessions_agents_delete AFTER DELETE ON agents BEGIN
{leave}END;
CREATE TRIGGER IF NOT EXISTS sessions_agents_update
AFTER UPDATE OF session_id, created_at, orchestrator_agent_id ON agents BEGIN
{leave}{join}    UPDATE cost_days SET session_id = NEW.session_id,
        orchestrator_agent_id = NEW.orchestrator_agent_id
    WHERE agent_id = NEW.id AND (session_id <> NEW.session_id
                                 OR orchestrator_agent_id <> NEW.orchestrator_agent_id);
END;
"""
# An agent joins its session (a new session is keyed by this agent's created_at) ...
_SQLITE_JOIN = """\
    INSERT INTO sessions (session_id, started_at) VALUES (NEW.session_id, NEW.created_at)
    ON CONFLICT (session_id) DO NOTHING;
"""
# ... and leaves it: the session goes with its last agent; its key stays until then.
_SQLITE_LEAVE = """\
    DELETE FROM sessions WHERE session_id = OLD.session_id
        AND NOT EXISTS (SELECT 1 FROM agents WHERE session_id = OLD.session_id);
"""
_SQLITE_SESSION_NAMES = ("sessions_agents_insert", "sessions_agents_delete",
                         "sessions_agents_update")
# cost_totals is computed whole from cost_days and cost_rollups, not added to: `upgrade` runs
# this migration again when its row in schema_migrations is gone (migrations.pending), and an
# addition would count the rollups twice (the other two skip the rows they hold already).
_SQLITE_BACKFILL = """\
INSERT OR IGNORE INTO sessions (session_id, started_at)
SELECT session_id, min(created_at) FROM agents GROUP BY session_id;
INSERT OR IGNORE INTO cost_days (agent_id, day, model, session_id, orchestrator_agent_id,
                                 prompts, tokens_input, tokens_output, cost_usd)
SELECT p.agent_id, substr(p.created_at, 1, 10), p.model, min(a.session_id),
       min(a.orchestrator_agent_id), count(*), sum(p.tokens_input), sum(p.tokens_output),
       sum(p.cost_usd)
FROM prompts p JOIN agents a ON a.id = p.agent_id
GROUP BY p.agent_id, substr(p.created_at, 1, 10), p.model;
DELETE FROM cost_totals;
INSERT INTO cost_totals (day, orchestrator_agent_id, model, prompts, tokens_input,
                         tokens_output, cost_usd)
SELECT day, orchestrator_agent_id, model, sum(prompts), sum(tokens_input), sum(tokens_output),
       sum(cost_usd)
FROM (SELECT day, orchestrator_agent_id, model, prompts, tokens_input, tokens_output, cost_usd
      FROM cost_days
      UNION ALL
      SELECT day, orchestrator_agent_id, model, prompts, tokens_input, tokens_output, cost_usd
      FROM cost_rollups)
GROUP BY day, orchestrator_agent_id, model HAVING sum(prompts) > 0;
"""
# The rowid span: rows get rowid max + 1, so it counts them until rows in the middle are
# deleted (then it overestimates: used, and labelled, for big tables only). One max() or min()
# per SELECT, so each is a single index probe.
_SQLITE_ESTIMATE = ("SELECT '{table}', (SELECT max(rowid) FROM {table}) "
                    "- (SELECT min(rowid) FROM {table}) + 1")
ESTIMATED_TABLES = ("orchestrator_agents", "agents", "prompts", "agent_logs", "system_logs")


def session_trigger_sql(dialect: Dialect) -> str:
    """Return migration 0008: the ``sessions`` triggers again, keeping each session's key."""
    if dialect is Dialect.SQLITE:
        return ("".join(f"DROP TRIGGER IF EXISTS {name};\n" for name in _SQLITE_SESSION_NAMES)
                + _SQLITE_SESSIONS.format(join=_SQLITE_JOIN, leave=_SQLITE_LEAVE))
    if dialect is Dialect.POSTGRES:
        return _postgres_sessions()
    assert_never(dialect)


def _sqlite() -> str:
    parts = [_SQLITE_SESSIONS.format(join=_SQLITE_JOIN, leave=_SQLITE_LEAVE)]
    for feed in _feeds("substr({r}.created_at, 1, 10)"):
        events = {"insert": _sqlite_add(feed, "NEW"), "delete": _sqlite_take(feed, "OLD"),
                  "update": _sqlite_take(feed, "OLD") + _sqlite_add(feed, "NEW")}
        for event, body in events.items():
            name = f"{feed.total}_{feed.source}_{event}"
            on = event.upper()
            if feed.source == "prompts" and event == "update":  # a status or response edit
                on = "UPDATE OF agent_id, model, tokens_input, tokens_output, cost_usd, created_at"
            parts.append(_SQLITE_TRIGGER.format(name=name, event=on, source=feed.source,
                                                body=body))
    parts.append(_SQLITE_BACKFILL)
    parts.append("CREATE VIEW IF NOT EXISTS row_estimates (table_name, estimate) AS\n    "
                 + "\n    UNION ALL ".join(_SQLITE_ESTIMATE.format(table=t)
                                          for t in ESTIMATED_TABLES) + ";\n")
    return "".join(parts)


# PostgreSQL -------------------------------------------------------------------------------------
# Rows are upserted in key order, so two writers never lock the same totals in opposite orders.
_PG_ADD = """\
        INSERT INTO {total} AS t ({columns})
        SELECT {keys}, {copied}{sums} FROM {rows} AS r{join}
        GROUP BY {group} ORDER BY {group}
        ON CONFLICT ({conflict}) DO UPDATE SET {added};
"""
_PG_TAKE = """\
        UPDATE {total} AS t SET {differences}
        FROM (SELECT {keys}, {sums} FROM old_rows AS r GROUP BY {group}) AS d
        WHERE {same};
"""
_PG_EMPTIED = """\
    DELETE FROM {total} AS t USING (SELECT DISTINCT {first} AS k FROM old_rows AS r) AS o
    WHERE t.{first_column} = o.k AND t.prompts <= 0;
"""
_PG_FUNCTION = """\
CREATE OR REPLACE FUNCTION orchestrator_db_{total}_{source}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Each branch names only the transition tables its event has.
    IF TG_OP = 'INSERT' THEN
{insert}        RETURN NULL;
    ELSIF TG_OP = 'DELETE' THEN
{delete}    ELSE
{update}    END IF;
{emptied}    RETURN NULL;
END
$$;
"""
_PG_TRIGGERS = """\
CREATE OR REPLACE TRIGGER {total}_{source}_insert AFTER INSERT ON {source}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_{total}_{source}();
CREATE OR REPLACE TRIGGER {total}_{source}_update AFTER UPDATE ON {source}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_{total}_{source}();
CREATE OR REPLACE TRIGGER {total}_{source}_delete AFTER DELETE ON {source}
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_db_{total}_{source}();
"""


def _pg_add(feed: _Feed, rows: str, sign: str = "") -> str:
    keys = [f"{feed.key_of[k].format(r='r')} AS {k}" for k in feed.keys]
    copied = "".join(f"min({e}::text)::{'uuid' if 'agent' in c else 'text'}, "
                     for c, e in feed.copied.items())
    sums = ", ".join(f"sum({sign}{feed.counts[c].format(r='r')})" for c in COUNTS)
    join = " JOIN agents AS a ON a.id = r.agent_id" if feed.copied else ""
    added = [f"{c} = t.{c} + excluded.{c}" for c in COUNTS[:-1]]
    added.append("cost_usd = greatest(t.cost_usd + excluded.cost_usd, 0)")
    return _PG_ADD.format(
        total=feed.total, columns=", ".join([*feed.keys, *feed.copied, *COUNTS]),
        keys=", ".join(keys), copied=copied, sums=sums, rows=rows, join=join,
        group=", ".join(str(i + 1) for i in range(len(feed.keys))), conflict=_conflict(feed),
        added=", ".join(added))


def _pg_take(feed: _Feed) -> str:
    keys = ", ".join(f"{feed.key_of[k].format(r='r')} AS {k}" for k in feed.keys)
    sums = ", ".join(f"sum({feed.counts[c].format(r='r')}) AS {c}" for c in COUNTS)
    differences = [f"{c} = t.{c} - d.{c}" for c in COUNTS[:-1]]
    differences.append("cost_usd = greatest(t.cost_usd - d.cost_usd, 0)")
    same = " AND ".join(f"t.{k} IS NOT DISTINCT FROM d.{k}" if k == "model" else f"t.{k} = d.{k}"
                        for k in feed.keys)
    return _PG_TAKE.format(total=feed.total, differences=", ".join(differences), keys=keys,
                           sums=sums, group=", ".join(str(i + 1) for i in range(len(feed.keys))),
                           same=same)


def _pg_moved(feed: _Feed) -> str:
    """UPDATE: the old version of each changed row out, the new one in (as one upsert)."""
    watched = sorted({*feed.key_of.values(), *feed.counts.values()} - {"1"})
    old = ", ".join(e.format(r="o") for e in watched)
    new = ", ".join(e.format(r="n") for e in watched)
    changed = (f"(SELECT {{side}}.* FROM old_rows AS o JOIN new_rows AS n USING (id) "
               f"WHERE ({old}) IS DISTINCT FROM ({new}))")
    if feed.source != "prompts":  # totals: every changed row counts (no id on cost_rollups)
        return _pg_add(feed, "old_rows", "-") + _pg_add(feed, "new_rows")
    return (_pg_add(feed, changed.format(side="o"), "-")
            + _pg_add(feed, changed.format(side="n")))


_PG_SESSIONS = """\
CREATE OR REPLACE FUNCTION orchestrator_db_sessions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Agents leaving a session (deleted, or moved to another session): the session goes
    -- with its last agent; its key stays until then. A status update moves nothing.
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM sessions AS s USING (SELECT DISTINCT session_id FROM {left} AS m) AS g
        WHERE s.session_id = g.session_id
            AND NOT EXISTS (SELECT 1 FROM agents AS a WHERE a.session_id = g.session_id);
    END IF;
    IF TG_OP = 'UPDATE' THEN
        UPDATE cost_days AS c SET session_id = n.session_id,
                                  orchestrator_agent_id = n.orchestrator_agent_id
        FROM new_rows AS n JOIN old_rows AS o USING (id)
        WHERE c.agent_id = n.id AND (n.session_id <> o.session_id
                                     OR n.orchestrator_agent_id <> o.orchestrator_agent_id);
    END IF;
    -- Agents joining a session: a new one is keyed by its first agents' created_at; agents
    -- joining a running session never lock its row.
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO sessions (session_id, started_at)
        SELECT session_id, min(created_at) FROM {joined} AS m GROUP BY 1 ORDER BY 1
        ON CONFLICT (session_id) DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
"""
_PG_SESSION_TRIGGERS = """\
CREATE OR REPLACE TRIGGER sessions_agents_insert AFTER INSERT ON agents
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}_insert();
CREATE OR REPLACE TRIGGER sessions_agents_update AFTER UPDATE ON agents
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function}_update();
CREATE OR REPLACE TRIGGER sessions_agents_delete AFTER DELETE ON agents
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}_delete();
"""
_PG_BACKFILL = """\
INSERT INTO sessions (session_id, started_at)
SELECT session_id, min(created_at) FROM agents GROUP BY session_id
ON CONFLICT (session_id) DO NOTHING;
INSERT INTO cost_days (agent_id, day, model, session_id, orchestrator_agent_id, prompts,
                       tokens_input, tokens_output, cost_usd)
SELECT p.agent_id, (p.created_at AT TIME ZONE 'UTC')::date, p.model, min(a.session_id),
       min(a.orchestrator_agent_id::text)::uuid, count(*), sum(p.tokens_input),
       sum(p.tokens_output), sum(p.cost_usd)
FROM prompts AS p JOIN agents AS a ON a.id = p.agent_id
GROUP BY 1, 2, 3
ON CONFLICT DO NOTHING;
"""
# The planner's estimate, scaled to the table's pages now (as the planner does); NULL for a
# table never analysed. to_regclass() follows search_path, as the queries do.
_PG_ESTIMATES = """\
CREATE OR REPLACE VIEW row_estimates (table_name, estimate) AS
SELECT t.name, CASE WHEN c.reltuples < 0 THEN NULL
                    WHEN c.relpages = 0 THEN c.reltuples::bigint
                    ELSE (c.reltuples / c.relpages * (pg_relation_size(c.oid)
                          / current_setting('block_size')::bigint))::bigint END
FROM unnest(ARRAY[{tables}]) AS t (name)
JOIN pg_class AS c ON c.oid = to_regclass(t.name);
"""


def _postgres_sessions() -> str:
    # One sessions function per event, each naming only its event's transition tables; an
    # UPDATE counts only the agents it moved to another session.
    moved = ("(SELECT {side}.* FROM old_rows AS o JOIN new_rows AS n USING (id) WHERE "
             "o.session_id IS DISTINCT FROM n.session_id)")
    parts = []
    for event, left, joined in (("insert", "old_rows", "new_rows"),
                                ("delete", "old_rows", "new_rows"),
                                ("update", moved.format(side="o"), moved.format(side="n"))):
        parts.append(_PG_SESSIONS.replace("orchestrator_db_sessions()",
                                          f"orchestrator_db_sessions_{event}()")
                     .format(left=left, joined=joined))
    parts.append(_PG_SESSION_TRIGGERS.format(function="orchestrator_db_sessions"))
    return "".join(parts)


def _postgres() -> str:
    parts = [_postgres_sessions()]
    # cost_totals is left empty here: its few rows a day would be updated by every prompt
    # write, and PostgreSQL's writers on many machines would queue on them (the row lock is
    # held to commit: 32 connections writing prompts of one orchestrator agent ran at a sixth
    # of their speed). The whole-history groupings read cost_days instead (Store.keeps_totals).
    for feed in _feeds("({r}.created_at AT TIME ZONE 'UTC')::date")[:1]:
        first = feed.keys[0]
        parts.append(_PG_FUNCTION.format(
            total=feed.total, source=feed.source, insert=_pg_add(feed, "new_rows"),
            delete=_pg_take(feed), update=_pg_moved(feed),
            emptied=_PG_EMPTIED.format(total=feed.total, first=feed.key_of[first].format(r="r"),
                                       first_column=first)))
        parts.append(_PG_TRIGGERS.format(total=feed.total, source=feed.source))
    parts.append(_PG_BACKFILL)
    parts.append(_PG_ESTIMATES.format(tables=", ".join(f"'{t}'" for t in ESTIMATED_TABLES)))
    return "".join(parts)


__all__ = ["aggregate_sql", "session_trigger_sql"]
