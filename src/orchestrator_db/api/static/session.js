// One session: its agents, a timeline of their steps, prompts with tokens and cost, cost over
// time and a live log tail. Live changes arrive over /ws/events?session_id=...

import { LEVELS, get, getAll, levelRank } from "./api.js";
import { cumulativeCostChart } from "./chart.js";
import {
  badge, empty, failedAttempts, fmtClock, fmtCost, fmtDuration, fmtInt, fmtTime, h,
  idTail, mount, throttle,
} from "./dom.js";

const STEP_TYPES = ["step_start", "step_end", "state_change"];
const TAIL_MAX = 1000;

function kpi(label, value, sub) {
  return h("div", { class: "kpi" },
    h("div", { class: "kpi-label" }, label),
    h("div", { class: "kpi-value" }, value),
    sub ? h("div", { class: "kpi-sub" }, sub) : null);
}

function card(title, sub, ...body) {
  return h("section", { class: "card" },
    h("div", { class: "card-head" }, h("h2", {}, title), sub), ...body);
}

function ms(a, b) {
  if (!a) return null;
  return (b ? new Date(b) : new Date()).getTime() - new Date(a).getTime();
}

export async function renderSession({ view, crumbs, setLive, LiveEvents }, sessionId) {
  mount(crumbs,
    h("a", { class: "crumb", href: "#/" }, "Sessions"),
    h("span", { class: "crumb-sep", "aria-hidden": "true" }, "/"),
    h("span", { class: "crumb current mono" }, sessionId));

  const state = {
    agents: new Map(), // id -> agent
    oaNames: new Map(), // orchestrator_agent_id -> name
    logs: [], // tail, oldest first
    logIds: new Set(),
    steps: [],
    stepIds: new Set(),
    prompts: [],
    minLevel: "DEBUG",
    follow: true,
  };

  const title = h("div", { class: "page-title" });
  const kpis = h("section", { class: "kpis" });
  const agentsBody = h("tbody");
  const gantt = h("div", { class: "gantt" });
  const stepsList = h("ol", { class: "timeline", id: "timeline" });
  const promptsBody = h("div", { class: "prompts", id: "prompts" });
  const costChart = h("div", { class: "chart-wrap" });
  const tail = h("div", { class: "tail", id: "log-tail", role: "log", "aria-live": "polite" });
  const levelSelect = h("select", { id: "level-filter", "aria-label": "Minimum level",
    onchange: () => { state.minLevel = levelSelect.value; renderTail(); } },
  LEVELS.map((l) => h("option", { value: l }, l === "DEBUG" ? "All levels" : `${l} and above`)));
  const followBox = h("input", { type: "checkbox", checked: true,
    onchange: () => { state.follow = followBox.checked; if (state.follow) scrollTail(); } });
  const tailCount = h("span", { class: "muted" });

  mount(view,
    title,
    kpis,
    h("div", { class: "grid-2" },
      card("Agents", h("span", { class: "muted" }, "runtime agents in this session"),
        h("div", { class: "table-scroll" }, h("table", { class: "table", id: "agents" },
          h("thead", {}, h("tr", {},
            h("th", {}, "Agent"), h("th", {}, "Model"), h("th", {}, "Status"),
            h("th", {}, "Started"), h("th", { class: "num" }, "Duration"),
            h("th", { class: "num", title: "This agent and its sub-agents" }, "Tokens"),
            h("th", { class: "num", title: "This agent and its sub-agents" }, "Cost"))),
          agentsBody)),
        gantt),
      card("Cost over time", h("span", { class: "muted" }, "cumulative, this session"),
        costChart)),
    h("div", { class: "grid-2" },
      card("Timeline", h("span", { class: "muted" }, "steps and state changes"),
        h("div", { class: "timeline-scroll" }, stepsList)),
      card("Live log", h("div", { class: "tail-controls" }, tailCount, levelSelect,
        h("label", { class: "follow" }, followBox, "Follow")),
      tail)),
    card("Prompts", h("span", { class: "muted" }, "with response, tokens and cost"),
      promptsBody));

  const agentName = (agentId) => {
    const a = state.agents.get(agentId);
    if (!a) return agentId ? idTail(agentId) : "—";
    return a.name || state.oaNames.get(a.orchestrator_agent_id) || idTail(a.id);
  };
  // The name and the random tail of the id: two runs of one agent stay apart.
  const agentLabel = (agentId) => h("span", { class: "agent-label", title: agentId || "" },
    agentName(agentId), agentId ? h("span", { class: "id-tail mono" }, idTail(agentId)) : null);

  async function loadNames() {
    const missing = [...new Set([...state.agents.values()].map((a) => a.orchestrator_agent_id))]
      .filter((id) => !state.oaNames.has(id));
    await Promise.all(missing.map(async (id) => {
      try {
        const oa = await get(`/api/orchestrator-agents/${encodeURIComponent(id)}`);
        state.oaNames.set(id, oa.name);
      } catch {
        state.oaNames.set(id, idTail(id));
      }
    }));
  }

  // --- header and KPIs ---------------------------------------------------------------------
  async function loadSummary() {
    let summary;
    try {
      summary = await get(`/api/sessions/${encodeURIComponent(sessionId)}/summary`);
    } catch (err) {
      if (err.status === 404) {
        mount(title, h("h1", {}, "Session not found"));
        return;
      }
      throw err;
    }
    mount(title,
      h("h1", {}, h("span", { class: "muted" }, "Session "), h("span", { class: "mono" }, sessionId)),
      badge(summary.status), failedAttempts(summary));
    mount(kpis,
      kpi("Agents", fmtInt(summary.agents),
        Object.entries(summary.agents_by_status).filter(([, n]) => n)
          .map(([s, n]) => `${n} ${s}`).join(" · ")),
      kpi("Prompts", fmtInt(summary.prompts)),
      kpi("Tokens", fmtInt(summary.tokens_input + summary.tokens_output),
        `${fmtInt(summary.tokens_input)} in · ${fmtInt(summary.tokens_output)} out`),
      kpi("Cost", fmtCost(summary.cost_usd)),
      kpi("Duration", fmtDuration(ms(summary.first_activity, summary.last_activity)),
        `since ${fmtTime(summary.first_activity)}`));
  }

  // --- agents ------------------------------------------------------------------------------
  async function loadAgents() {
    const agents = await getAll("/api/agents", { session_id: sessionId });
    for (const a of agents) state.agents.set(a.id, a);
    await loadNames();
    renderAgents();
  }

  // The sub-agent tree: each agent under its parent_agent_id (a parent outside this session
  // makes it a root here), siblings by start, with its whole subtree's tokens and cost.
  function agentTree() {
    const agents = [...state.agents.values()].sort((a, b) => a.created_at.localeCompare(b.created_at));
    const children = new Map();
    for (const a of agents) {
      const parent = a.parent_agent_id && state.agents.has(a.parent_agent_id) ? a.parent_agent_id : null;
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(a);
    }
    const own = new Map();
    for (const p of state.prompts) {
      const t = own.get(p.agent_id) || { tokens: 0, cost: 0 };
      t.tokens += p.tokens_input + p.tokens_output;
      t.cost += p.cost_usd;
      own.set(p.agent_id, t);
    }
    const rows = [];
    const seen = new Set();
    const visit = (a, depth) => {
      if (seen.has(a.id)) return { tokens: 0, cost: 0 }; // a cycle of parents: show it once
      seen.add(a.id);
      const row = { agent: a, depth, tokens: 0, cost: 0, children: 0 };
      rows.push(row);
      const mine = own.get(a.id) || { tokens: 0, cost: 0 };
      row.tokens = mine.tokens;
      row.cost = mine.cost;
      for (const c of children.get(a.id) || []) {
        const sub = visit(c, depth + 1);
        row.tokens += sub.tokens;
        row.cost += sub.cost;
        row.children += 1;
      }
      return row;
    };
    for (const root of children.get(null) || []) visit(root, 0);
    for (const a of agents) if (!seen.has(a.id)) visit(a, 0);
    return rows;
  }

  function renderAgents() {
    const rows = agentTree();
    mount(agentsBody, rows.length ? rows.map(({ agent: a, depth, tokens, cost, children }) => {
      const name = h("td", { class: "agent-cell" },
        h("div", { class: "strong agent-name" }, depth ? h("span", { class: "tree-branch", "aria-hidden": "true" }, "└ ") : null,
          agentName(a.id)),
        h("div", { class: "muted mono small", title: a.id }, idTail(a.id),
          children ? ` · ${children} sub-agent${children > 1 ? "s" : ""}` : ""));
      name.style.setProperty("--depth", String(Math.min(depth, 12)));
      return h("tr", { dataset: { agent: a.id, depth: String(depth), parent: a.parent_agent_id || "" } },
        name,
        h("td", { class: "mono small" }, a.model || "—"),
        h("td", {}, badge(a.status)),
        h("td", { title: a.started_at || "" }, fmtTime(a.started_at)),
        h("td", { class: "num" }, fmtDuration(ms(a.started_at, a.completed_at))),
        h("td", { class: "num", dataset: { subtreeTokens: String(tokens) } }, fmtInt(tokens)),
        h("td", { class: "num strong", dataset: { subtreeCost: String(cost) } }, fmtCost(cost)));
    })
      : h("tr", {}, h("td", { colspan: 7 }, empty("No agents."))));
    renderGantt(rows.map((r) => r.agent));
  }

  function renderGantt(agents) {
    const runs = agents.filter((a) => a.started_at);
    if (!runs.length) { mount(gantt); return; }
    const t0 = Math.min(...runs.map((a) => new Date(a.started_at).getTime()));
    const t1 = Math.max(...runs.map((a) => (a.completed_at ? new Date(a.completed_at) : new Date()).getTime()), t0 + 1000);
    mount(gantt, runs.map((a) => {
      const start = new Date(a.started_at).getTime();
      const end = a.completed_at ? new Date(a.completed_at).getTime() : Date.now();
      const bar = h("div", { class: `gantt-bar gantt-${a.status}`,
        title: `${agentName(a.id)}: ${fmtDuration(end - start)} (${a.status})` });
      bar.style.left = `${(100 * (start - t0)) / (t1 - t0)}%`;
      bar.style.width = `${Math.max(0.8, (100 * (end - start)) / (t1 - t0))}%`;
      return h("div", { class: "gantt-row" },
        h("div", { class: "gantt-label" }, agentLabel(a.id)),
        h("div", { class: "gantt-track" }, bar));
    }));
  }

  // --- timeline ----------------------------------------------------------------------------
  async function loadSteps() {
    const lists = await Promise.all(STEP_TYPES.map((t) =>
      getAll("/api/agent-logs", { session_id: sessionId, log_type: t }, 2000)));
    for (const row of lists.flat()) addStep(row, false);
    renderSteps();
  }

  function addStep(row, render = true) {
    if (!STEP_TYPES.includes(row.log_type) || state.stepIds.has(row.id)) return;
    state.stepIds.add(row.id);
    state.steps.push(row);
    if (render) renderSteps();
  }

  function renderSteps() {
    state.steps.sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id));
    mount(stepsList, state.steps.length ? state.steps.map((row) =>
      h("li", { class: `step step-${row.log_type} level-${row.log_level.toLowerCase()}` },
        h("span", { class: "step-dot", "aria-hidden": "true" }),
        h("div", { class: "step-body" },
          h("div", { class: "step-meta" },
            h("span", { class: "mono small" }, fmtClock(row.created_at)),
            h("span", { class: "chip" }, agentLabel(row.agent_id)),
            h("span", { class: "step-type" }, row.log_type.replace("_", " "))),
          h("div", { class: "step-msg" }, row.message))))
      : empty("No steps recorded yet."));
  }

  // --- prompts -----------------------------------------------------------------------------
  async function loadPrompts() {
    state.prompts = await getAll("/api/prompts", { session_id: sessionId }, 2000);
    renderPrompts();
    renderAgents(); // subtree tokens and cost
  }

  function renderPrompts() {
    const rows = [...state.prompts].sort((a, b) => b.created_at.localeCompare(a.created_at));
    // In a scroll box, as the agents table: a narrow screen scrolls the table, not the page.
    mount(promptsBody, rows.length ? h("div", { class: "table-scroll" },
      h("table", { class: "table prompts-table" },
      h("thead", {}, h("tr", {},
        h("th", {}, "Time"), h("th", {}, "Agent"), h("th", {}, "Model"), h("th", {}, "Status"),
        h("th", { class: "num" }, "In"), h("th", { class: "num" }, "Out"),
        h("th", { class: "num" }, "Cost"), h("th", {}, "Prompt and response"))),
      h("tbody", {}, rows.map((p) => h("tr", { dataset: { prompt: p.id } },
        h("td", { class: "mono small nowrap" }, fmtClock(p.created_at)),
        h("td", { class: "agent-col" }, agentLabel(p.agent_id)),
        h("td", { class: "mono small" }, p.model || "—"),
        h("td", {}, badge(p.status)),
        h("td", { class: "num" }, fmtInt(p.tokens_input)),
        h("td", { class: "num" }, fmtInt(p.tokens_output)),
        h("td", { class: "num strong" }, fmtCost(p.cost_usd)),
        h("td", { class: "prompt-cell" },
          h("details", {},
            h("summary", {}, h("span", { class: "prompt-preview" }, p.content)),
            h("div", { class: "io-label" }, "Prompt"),
            h("pre", { class: "io" }, p.content),
            h("div", { class: "io-label" }, "Response"),
            h("pre", { class: "io response" }, p.response === null ? "—" : p.response)),
          p.response !== null
            ? h("div", { class: "response-preview" }, p.response) : null))))))
      : empty("No prompts yet."));
    mount(costChart, rows.length
      ? cumulativeCostChart(rows, { width: Math.max(320, costChart.clientWidth) })
      : empty("No cost yet."));
  }

  // --- live log tail -----------------------------------------------------------------------
  function logRow(row) {
    return h("div", { class: `log level-${row.log_level.toLowerCase()}`, dataset: { id: row.id } },
      h("span", { class: "log-time mono" }, fmtClock(row.created_at)),
      h("span", { class: `log-level lvl-${row.log_level.toLowerCase()}` }, row.log_level),
      h("span", { class: "log-agent" }, agentLabel(row.agent_id)),
      h("span", { class: "log-type" }, row.log_type),
      h("span", { class: "log-msg" }, row.message));
  }

  const visible = (row) => levelRank(row.log_level) >= levelRank(state.minLevel);

  function renderTail() {
    const rows = state.logs.filter(visible);
    mount(tail, rows.length ? rows.map(logRow) : empty("Waiting for log lines…"));
    tailCount.textContent = `${rows.length} lines`;
    scrollTail();
  }

  function scrollTail() {
    if (state.follow) tail.scrollTop = tail.scrollHeight;
  }

  // New lines, a whole batch at once: appended to the tail, and as many of the oldest rows
  // dropped as the tail outgrows TAIL_MAX. Never a rebuild: at 1,000 rows that froze the page.
  function addLogs(rows) {
    const fresh = [];
    for (const row of rows) {
      if (state.logIds.has(row.id)) continue;
      state.logIds.add(row.id);
      state.logs.push(row);
      fresh.push(row);
    }
    if (!fresh.length) return;
    const dropped = new Set();
    if (state.logs.length > TAIL_MAX) {
      for (const d of state.logs.splice(0, state.logs.length - TAIL_MAX)) {
        state.logIds.delete(d.id);
        dropped.add(d.id);
      }
    }
    const shown = fresh.filter((row) => visible(row) && !dropped.has(row.id));
    if (shown.length && tail.querySelector(".empty")) mount(tail);
    // The tail's rows are in arrival order, so the dropped ones are at its start.
    while (tail.firstElementChild && dropped.has(tail.firstElementChild.dataset.id)) {
      tail.firstElementChild.remove();
    }
    if (shown.length) {
      const frag = document.createDocumentFragment();
      for (const row of shown) frag.append(logRow(row));
      tail.append(frag);
    }
    if (!tail.firstElementChild) mount(tail, empty("Waiting for log lines…"));
    tailCount.textContent = `${tail.querySelectorAll(".log").length} lines`;
    scrollTail();
  }

  // Lines of one socket message arrive one event at a time: gather them, add them together.
  let pendingLogs = [];
  function addLog(row) {
    if (!pendingLogs.length) {
      queueMicrotask(() => {
        const rows = pendingLogs;
        pendingLogs = [];
        addLogs(rows);
      });
    }
    pendingLogs.push(row);
  }

  async function loadTail() {
    const page = await get("/api/agent-logs", { session_id: sessionId, order: "desc", limit: 300 });
    addLogs(page.items.reverse());
    renderTail();
  }

  // --- wiring ------------------------------------------------------------------------------
  // Take the feed position first: everything after it arrives over the socket, everything up
  // to it is in the REST answers, so nothing falls in between (duplicates are skipped by id).
  let position = null;
  try {
    position = (await get("/api/events/position")).position;
  } catch {
    position = null;
  }
  await loadSummary();
  await loadAgents();
  await Promise.all([loadSteps(), loadPrompts(), loadTail()]);

  // At most one reload of each part per 400 ms while events keep coming (a debounce waited
  // for a quiet gap that a steady stream never leaves).
  const refreshSummary = throttle(() => loadSummary().catch(() => {}), 400);
  const refreshPrompts = throttle(() => loadPrompts().catch(() => {}), 400);
  const refreshAgents = throttle(async () => {
    await loadNames();
    renderAgents();
  }, 200);

  const events = new LiveEvents({ session_id: sessionId }, {
    after: position,
    onState: setLive,
    onEvent: (e) => {
      if (e.op === "reset") {
        // The database under the server was replaced: show what it holds now.
        window.dispatchEvent(new HashChangeEvent("hashchange"));
        return;
      }
      if (e.table === "agent_logs" && e.row) {
        addLog(e.row);
        addStep(e.row);
        refreshSummary();
      } else if (e.table === "agents") {
        if (e.op === "delete") state.agents.delete(e.id);
        else if (e.row) state.agents.set(e.row.id, e.row);
        refreshAgents();
        refreshSummary();
      } else if (e.table === "prompts") {
        refreshPrompts();
        refreshSummary();
      }
    },
  });
  const ticker = setInterval(() => {
    if ([...state.agents.values()].some((a) => a.status === "executing")) renderGantt(
      [...state.agents.values()].sort((a, b) => a.created_at.localeCompare(b.created_at)));
  }, 2000);
  return {
    cleanup: () => {
      events.close();
      clearInterval(ticker);
      [refreshSummary, refreshPrompts, refreshAgents].forEach((r) => r.cancel());
    },
  };
}
