// The dashboard: a sessions overview and one page per session, routed by the URL hash.

import { LiveEvents, get } from "./api.js";
import { h, mount } from "./dom.js";
import { renderOverview } from "./overview.js";

const view = document.getElementById("view");
const crumbs = document.getElementById("crumbs");
const live = document.getElementById("live");

// A token given in the address (?token=...) has been turned into an HttpOnly cookie by the
// server; take it out of the address bar so it does not end up in history or screenshots.
if (new URLSearchParams(location.search).has("token")) {
  history.replaceState(null, "", location.pathname + location.hash);
}

export function setLive(state) {
  live.dataset.state = state;
  live.querySelector(".live-text").textContent = state;
}

let current = null; // {cleanup()} of the page on screen

async function route() {
  if (current && current.cleanup) current.cleanup();
  current = null;
  const match = location.hash.match(/^#\/sessions\/(.+)$/);
  const ctx = { view, crumbs, setLive, LiveEvents };
  try {
    if (match) {
      // Loaded when first needed: the overview does not wait for it.
      const { renderSession } = await import("./session.js");
      current = await renderSession(ctx, decodeURIComponent(match[1]));
    } else {
      current = await renderOverview(ctx);
    }
  } catch (err) {
    mount(view, h("div", { class: "error-box" },
      h("strong", {}, "Could not load this page. "), err.message || String(err)));
  }
}

async function showEngine() {
  try {
    const stats = await get("/api/stats");
    const el = document.getElementById("engine");
    el.textContent = stats.engine;
    el.title = `${stats.location} · schema v${stats.schema_version}`;
  } catch {
    /* the page itself reports errors */
  }
}

window.addEventListener("hashchange", route);
// The engine label after the page's own data: the first view is what is waited for.
route().finally(showEngine);
