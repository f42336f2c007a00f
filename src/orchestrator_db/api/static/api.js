// Talking to the service: JSON over fetch, live events over one WebSocket that reconnects with
// its last position so nothing is missed. Authentication, when the server wants it, rides on the
// HttpOnly cookie set when the page was opened with ?token=.

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.type = err.type;
    this.field = err.field;
  }
}

export async function get(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  }
  const res = await fetch(url, { headers: { accept: "application/json" } });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

/** Every item of a list endpoint, following next_cursor (bounded by `max`). */
export async function getAll(path, params, max = 5000) {
  const items = [];
  let cursor = null;
  do {
    const page = await get(path, { ...params, limit: 1000, cursor });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
export function levelRank(level) {
  return LEVELS.indexOf(String(level || "").toUpperCase());
}
export { LEVELS };

/**
 * A live event stream. `onEvent(event)` gets each change event; `onState(state)` gets
 * "live" | "reconnecting". Reconnects with `after=<last position>` after a drop.
 */
export class LiveEvents {
  constructor(filters, { after = null, onEvent, onState } = {}) {
    this.filters = filters || {};
    this.position = after;
    this.onEvent = onEvent;
    this.onState = onState || (() => {});
    this.closed = false;
    this.delay = 500;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const url = new URL("/ws/events", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.hash = "";
    url.search = "";
    for (const [k, v] of Object.entries(this.filters)) {
      if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
    }
    if (this.position !== null && this.position !== undefined) {
      url.searchParams.set("after", this.position);
    }
    // One message per burst of events (a JSON array) instead of one per event: far fewer
    // sends for the server, and one handler call here per burst.
    url.searchParams.set("batch", "1");
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.delay = 500;
      this.onState("live");
    };
    ws.onmessage = (msg) => {
      let data;
      try {
        data = JSON.parse(msg.data);
      } catch {
        return;
      }
      for (const event of Array.isArray(data) ? data : [data]) this.receive(event);
    };
    ws.onclose = () => {
      if (this.closed) return;
      this.onState("reconnecting");
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
    };
  }

  /** One event of a message (a batched message holds several, in position order). */
  receive(event) {
    if (!event || event.error) return;
    if (event.op === "feed_error") {
      // The server cannot read its change log for now; it retries and events resume.
      this.onState("delayed");
      return;
    }
    if (event.op === "reset") {
      // The database was recreated or replaced: positions start over. Follow from the new
      // head and let the view reload what it shows.
      this.position = event.position;
      this.onEvent(event);
      return;
    }
    if (typeof event.position === "number") {
      if (this.position !== null && event.position <= this.position) return;
      this.position = event.position;
    }
    this.onEvent(event);
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}
