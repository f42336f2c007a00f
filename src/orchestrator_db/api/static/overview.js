// The overview: totals, cost per day and every session with its status, agents and cost.

import { get } from "./api.js";
import { costBarChart } from "./chart.js";
import {
  badge, empty, failedAttempts, fmtAgo, fmtCost, fmtInt, fmtTime, h, mount,
} from "./dom.js";

function kpi(label, value, sub) {
  return h("div", { class: "kpi" },
    h("div", { class: "kpi-label" }, label),
    h("div", { class: "kpi-value" }, value),
    sub ? h("div", { class: "kpi-sub" }, sub) : null);
}

function agentsCell(session) {
  const parts = Object.entries(session.agents_by_status)
    .filter(([, n]) => n > 0)
    .map(([status, n]) => h("span", { class: `pill pill-${status}`, title: status }, `${n} ${status}`));
  return h("td", {}, h("div", { class: "pills" }, parts));
}

function sessionRow(session) {
  const href = "#/sessions/" + encodeURIComponent(session.session_id);
  return h("tr", { class: "row-link", dataset: { session: session.session_id },
    onclick: () => { location.hash = href; } },
  h("td", {}, h("a", { href, class: "mono" }, session.session_id)),
  h("td", {}, h("div", { class: "status-cell" }, badge(session.status), failedAttempts(session))),
  agentsCell(session),
  h("td", { class: "num" }, fmtInt(session.prompts)),
  h("td", { class: "num" }, fmtInt(session.tokens_input + session.tokens_output)),
  h("td", { class: "num strong" }, fmtCost(session.cost_usd)),
  h("td", { title: fmtTime(session.last_activity) }, fmtAgo(session.last_activity)));
}

// Sessions per page of the table (a screenful); "Show more" follows the keyset cursor. The
// order (first agent's start, newest first) does not move with activity, so reloads keep rows
// in place. index.html preloads the first page: its limit there must stay equal to PAGE.
const PAGE = 25;
// Live events are coalesced: at most one reload per part every THROTTLE_MS, and only of the
// parts an event can change (a log line changes none of them).
const THROTTLE_MS = 2000;

export async function renderOverview({ view, crumbs, setLive, LiveEvents }) {
  mount(crumbs, h("span", { class: "crumb current" }, "Sessions"));
  const kpis = h("section", { class: "kpis" });
  const chartBody = h("div", { class: "chart-wrap" });
  const tbody = h("tbody");
  const more = h("div", { class: "table-foot" });
  mount(view,
    kpis,
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Cost per day"),
        h("span", { class: "muted" }, "all sessions, UTC days")),
      chartBody),
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Sessions"),
        h("span", { class: "muted" }, "most recently started first")),
      h("div", { class: "table-scroll" },
        h("table", { class: "table", id: "sessions" },
          h("thead", {}, h("tr", {},
            h("th", {}, "Session"), h("th", {}, "Status"), h("th", {}, "Agents"),
            h("th", { class: "num" }, "Prompts"), h("th", { class: "num" }, "Tokens"),
            h("th", { class: "num" }, "Cost"), h("th", {}, "Last activity"))),
          tbody)),
      more));

  const state = { sessions: [], cursor: null, costs: null, stats: null };

  function renderKpis() {
    if (!state.costs || !state.stats) return;
    const { costs, stats } = state;
    const totalCost = costs.items.reduce((a, r) => a + r.cost_usd, 0);
    const totalTokens = costs.items.reduce((a, r) => a + r.tokens_input + r.tokens_output, 0);
    const running = state.sessions.filter((s) => s.status === "executing").length;
    const about = (table) => (stats.estimated && stats.estimated[table] ? "≈ " : "");
    mount(kpis,
      // Only the loaded rows are counted (the API has no session total): say so.
      kpi(state.cursor ? "Sessions shown" : "Sessions", fmtInt(state.sessions.length),
        `${running} running${state.cursor ? " · more below" : ""}`),
      kpi("Total cost", fmtCost(totalCost), `${about("prompts")}${fmtInt(stats.counts.prompts)} prompts`),
      kpi("Tokens", fmtInt(totalTokens), "input + output"),
      kpi("Agent runs", about("agents") + fmtInt(stats.counts.agents),
        `${fmtInt(stats.counts.orchestrator_agents)} agent definitions`),
      kpi("Log lines",
        (about("agent_logs") || about("system_logs")) +
          fmtInt(stats.counts.agent_logs + stats.counts.system_logs),
        `${fmtInt(stats.counts.system_logs)} system`));
  }

  function renderSessions() {
    mount(tbody, state.sessions.length ? state.sessions.map(sessionRow)
      : h("tr", {}, h("td", { colspan: 7 }, empty("No sessions yet. Run `orchestrator-db demo`."))));
    mount(more, state.cursor
      ? h("button", { class: "button", id: "more-sessions", onclick: showMore }, "Show more")
      : null);
  }

  async function showMore() {
    if (!state.cursor) return;
    const page = await get("/api/sessions", { limit: PAGE, cursor: state.cursor });
    state.sessions = state.sessions.concat(page.items);
    state.cursor = page.next_cursor;
    renderSessions();
    renderKpis();
  }

  // The loaded rows again, from the top (as many as are shown, so "Show more" is kept).
  async function loadSessions() {
    const page = await get("/api/sessions",
      { limit: Math.min(1000, Math.max(PAGE, state.sessions.length)) });
    state.sessions = page.items;
    state.cursor = page.next_cursor;
    renderSessions();
    renderKpis();
  }

  async function loadCosts() {
    state.costs = await get("/api/costs", { group_by: "day" });
    mount(chartBody, state.costs.items.length
      ? costBarChart(state.costs.items, { width: Math.max(360, chartBody.clientWidth) })
      : empty("No prompts yet."));
    renderKpis();
  }

  async function loadStats() {
    state.stats = await get("/api/stats");
    renderKpis();
  }

  const loaders = { sessions: loadSessions, costs: loadCosts, stats: loadStats };
  // The sessions table first: it is what the page is for; the chart and totals follow.
  await loadSessions();
  await Promise.all([loadCosts(), loadStats()]);

  // Parts to reload, marked by events and reloaded together after at most THROTTLE_MS.
  const dirty = new Set();
  let timer = null;
  let lastRun = 0;
  function flush() {
    timer = null;
    lastRun = Date.now();
    const parts = [...dirty];
    dirty.clear();
    Promise.all(parts.map((part) => loaders[part]())).catch(() => {});
  }
  function mark(...parts) {
    parts.forEach((part) => dirty.add(part));
    if (timer === null) timer = setTimeout(flush, Math.max(0, lastRun + THROTTLE_MS - Date.now()));
  }
  const events = new LiveEvents({}, {
    onEvent: (e) => {
      if (e.op === "reset") mark("sessions", "costs", "stats");
      else if (e.table === "agents") mark("sessions", "stats");
      else if (e.table === "prompts") mark("sessions", "costs", "stats");
    },
    onState: setLive,
  });
  const ticker = setInterval(() => mark("sessions"), 30000); // keeps "x min ago" honest
  return {
    cleanup: () => { events.close(); clearInterval(ticker); if (timer !== null) clearTimeout(timer); },
  };
}
