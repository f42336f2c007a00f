// The overview: totals, cost per day and every session with its status, agents and cost.

import { get } from "./api.js";
import { costBarChart } from "./chart.js";
import {
  badge, debounce, empty, failedAttempts, fmtAgo, fmtCost, fmtInt, fmtTime, h, mount,
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
        h("span", { class: "muted" }, "most recently active first")),
      h("div", { class: "table-scroll" },
        h("table", { class: "table", id: "sessions" },
          h("thead", {}, h("tr", {},
            h("th", {}, "Session"), h("th", {}, "Status"), h("th", {}, "Agents"),
            h("th", { class: "num" }, "Prompts"), h("th", { class: "num" }, "Tokens"),
            h("th", { class: "num" }, "Cost"), h("th", {}, "Last activity"))),
          tbody)),
      more));

  async function load() {
    const [sessions, costs, stats] = await Promise.all([
      get("/api/sessions", { limit: 200 }),
      get("/api/costs", { group_by: "day" }),
      get("/api/stats"),
    ]);
    const totalCost = costs.items.reduce((a, r) => a + r.cost_usd, 0);
    const totalTokens = costs.items.reduce((a, r) => a + r.tokens_input + r.tokens_output, 0);
    const running = sessions.items.filter((s) => s.status === "executing").length;
    mount(kpis,
      kpi("Sessions", fmtInt(sessions.items.length) + (sessions.next_cursor ? "+" : ""),
        `${running} running`),
      kpi("Total cost", fmtCost(totalCost), `${fmtInt(stats.counts.prompts)} prompts`),
      kpi("Tokens", fmtInt(totalTokens), "input + output"),
      kpi("Agent runs", fmtInt(stats.counts.agents),
        `${fmtInt(stats.counts.orchestrator_agents)} agent definitions`),
      kpi("Log lines", fmtInt(stats.counts.agent_logs + stats.counts.system_logs),
        `${fmtInt(stats.counts.system_logs)} system`));
    mount(chartBody, costs.items.length
      ? costBarChart(costs.items, { width: Math.max(360, chartBody.clientWidth) })
      : empty("No prompts yet."));
    mount(tbody, sessions.items.length ? sessions.items.map(sessionRow)
      : h("tr", {}, h("td", { colspan: 7 }, empty("No sessions yet. Run `orchestrator-db demo`."))));
    mount(more, sessions.next_cursor ? "Showing the 200 most recent sessions." : null);
  }

  await load();
  const refresh = debounce(() => load().catch(() => {}), 700);
  const events = new LiveEvents({}, {
    onEvent: (e) => {
      if (e.op === "reset" || e.table === "agents" || e.table === "prompts") refresh();
    },
    onState: setLive,
  });
  const ticker = setInterval(refresh, 30000); // keeps "x min ago" honest
  return { cleanup: () => { events.close(); clearInterval(ticker); } };
}
