// Building the DOM without HTML strings: every piece of text (agent names, LLM prompts and
// responses, log messages) becomes a Text node, so it can never be parsed as markup.

const SVG_NS = "http://www.w3.org/2000/svg";
// Right-to-left letters and bidi controls. Text holding one is isolated in a <bdi>: an override
// (U+202E) in an agent's name must not reorder the id, label or text that follows it.
const BIDI = /[\u0590-\u08ff\u200e\u200f\u202a-\u202e\u2066-\u2069\ufb1d-\ufdff\ufe70-\ufefc]/;

function append(parent, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(parent, c);
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    const text = document.createTextNode(String(child));
    if (BIDI.test(text.data) && parent.namespaceURI !== SVG_NS) {
      const isolated = document.createElement("bdi");
      isolated.appendChild(text);
      parent.appendChild(isolated);
    } else parent.appendChild(text);
  }
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.setAttribute("class", value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
}

/** h("div", {class: "x"}, "text", child, [more]) — an HTML element. */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

/** s("rect", {x: 1}) — an SVG element. */
export function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

/** Replace the children of `node`. */
export function mount(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export function fmtCost(value) {
  const v = Number(value || 0);
  if (v === 0) return "$0.00";
  if (v < 0.01) {
    return "$" + v.toLocaleString(undefined, { minimumFractionDigits: 4, maximumFractionDigits: 4 });
  }
  return "$" + v.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

export function fmtInt(value) {
  return Number(value || 0).toLocaleString();
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
    hour12: false,  // one clock everywhere: the timeline and the log use 24 hours
  });
}

export function fmtClock(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  // The milliseconds inside the formatter: in the locale's digits and separator (ar-EG).
  return d.toLocaleTimeString(undefined, {
    hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3,
    hour12: false,
  });
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const sec = ms / 1000;
  if (sec < 60) return `${sec.toFixed(1)} s`;
  const min = Math.floor(sec / 60);
  if (min < 60) return `${min} min ${Math.round(sec % 60)} s`;
  return `${Math.floor(min / 60)} h ${min % 60} min`;
}

export function fmtAgo(iso) {
  if (!iso) return "—";
  const sec = (Date.now() - new Date(iso).getTime()) / 1000;
  if (sec < 5) return "just now";
  if (sec < 60) return `${Math.round(sec)} s ago`;
  if (sec < 3600) return `${Math.round(sec / 60)} min ago`;
  if (sec < 86400) return `${Math.round(sec / 3600)} h ago`;
  return `${Math.round(sec / 86400)} d ago`;
}

export function badge(status) {
  return h("span", { class: `badge badge-${String(status).toLowerCase()}` }, status);
}

/** The random end of a UUIDv7 (its first characters are the creation time, alike for runs
 * started within a minute). */
export function idTail(id) {
  return String(id || "").slice(-8);
}

/** "1 failed attempt": failed runs that a later run of the same agent replaced, or nothing. */
export function failedAttempts(summary) {
  const n = summary.failed_attempts || 0;
  if (!n) return null;
  return h("span", { class: "failed-attempts", title: "failed runs that were retried" },
    `${n} failed attempt${n > 1 ? "s" : ""}`);
}

export function empty(text) {
  return h("div", { class: "empty" }, text);
}

/** Calls of the returned function run `fn` at most once per `ms` (the last call's arguments),
 * however steadily they come; a run that returns a promise is awaited before the next. */
export function throttle(fn, ms) {
  let timer = null;
  let running = false;
  let pending = false;
  let lastRun = 0;
  let args = [];
  let cancelled = false;
  const schedule = () => {
    if (timer !== null || running || cancelled) return;
    timer = setTimeout(run, Math.max(0, lastRun + ms - Date.now()));
  };
  async function run() {
    timer = null;
    pending = false;
    running = true;
    lastRun = Date.now();
    try {
      await fn(...args);
    } finally {
      running = false;
      if (pending) schedule();
    }
  }
  const call = (...a) => {
    args = a;
    pending = true;
    schedule();
  };
  call.cancel = () => {
    cancelled = true;
    if (timer !== null) clearTimeout(timer);
    timer = null;
  };
  return call;
}
