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
// Each route() takes a number; one that finishes after a newer one started is stale: its page
// is cleaned up (its socket closed) instead of being put on screen.
let routeSeq = 0;
let retryTimer = null;
let retryDelay = 1000;

function notFound(what) {
  mount(crumbs, h("a", { class: "crumb", href: "#/" }, "Sessions"));
  mount(view, h("div", { class: "error-box" }, h("strong", {}, "Not found. "), what));
}

async function route() {
  const seq = ++routeSeq;
  const stale = () => seq !== routeSeq;
  if (retryTimer !== null) { clearTimeout(retryTimer); retryTimer = null; }
  if (current && current.cleanup) current.cleanup();
  current = null;
  const match = location.hash.match(/^#\/sessions\/(.+)$/);
  const ctx = { view, crumbs, setLive, LiveEvents };
  let page = null;
  try {
    if (match) {
      let sessionId;
      try {
        sessionId = decodeURIComponent(match[1]);
      } catch {
        notFound(`"${match[1]}" is not a valid session address.`);
        return;
      }
      // Loaded when first needed: the overview does not wait for it.
      const { renderSession } = await import("./session.js");
      if (stale()) return;
      page = await renderSession(ctx, sessionId);
    } else {
      page = await renderOverview(ctx);
    }
  } catch (err) {
    if (stale()) return;
    // The server is down or failing: say so, and try again with a growing delay.
    setLive("offline");
    const seconds = Math.round(retryDelay / 1000);
    mount(view, h("div", { class: "error-box", id: "load-error" },
      h("strong", {}, "Could not load this page. "), err.message || String(err),
      h("div", { class: "small" }, `Retrying in ${seconds} s…`)));
    retryTimer = setTimeout(() => { retryTimer = null; if (!stale()) route(); }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 15000);
    return;
  }
  if (stale()) {
    if (page && page.cleanup) page.cleanup();
    // A newer page is already on screen, and this one drew into the view after it: draw the
    // newer one again (its own route has ended; one still loading draws over this anyway).
    if (current) route();
    return;
  }
  retryDelay = 1000;
  current = page;
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

window.addEventListener("hashchange", () => {
  window.scrollTo(0, 0); // a new page starts at its top
  route();
});
// The engine label after the page's own data: the first view is what is waited for.
route().finally(showEngine);
