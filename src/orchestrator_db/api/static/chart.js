// Small dependency-free SVG charts. Labels are SVG <text> nodes filled with textContent.

import { fmtCost, s } from "./dom.js";

/**
 * The axis for values up to `value` in `intervals` equal steps: each step 1, 2 or 5 times a
 * power of ten, so every gridline falls on a round amount; and a label for each gridline with
 * as many decimals as the step needs (a step of $0.025 labelled to the cent showed $0.03 at
 * $0.025 and $0.08 at $0.075).
 */
export function costAxis(value, intervals) {
  // Nothing spent: steps of $0.01; never under a millionth of a dollar, the labels' finest.
  const need = Math.max(value > 0 ? value / intervals : 0.01, 1e-6);
  const exp = Math.pow(10, Math.floor(Math.log10(need)));
  const step = [1, 2, 5, 10].map((m) => m * exp).find((m) => m >= need * (1 - 1e-9));
  const decimals = Math.min(6, Math.max(2, Math.ceil(-Math.log10(step) - 1e-9)));
  const label = (v) => "$" + v.toLocaleString(undefined, {
    minimumFractionDigits: decimals, maximumFractionDigits: decimals,
  });
  const ticks = [];
  for (let i = 0; i <= intervals; i++) ticks.push({ value: step * i, label: label(step * i) });
  return { max: step * intervals, ticks };
}

/** Room left of the plot for the longest tick label (11 px text, about 7 px a character):
 * "$2,000,000,000.00" was cut off in a fixed 64 px. */
function axisRoom(axis) {
  const longest = Math.max(...axis.ticks.map((t) => t.label.length));
  return Math.max(48, Math.ceil(longest * 7) + 14);
}

/**
 * A bar chart of cost per day: `rows` are {key: "YYYY-MM-DD", cost_usd, prompts, tokens_*}.
 * Days without spend inside the range are drawn as empty slots.
 */
export function costBarChart(rows, { width = 760, height = 220 } = {}) {
  const days = fillDays(rows);
  const axis = costAxis(Math.max(0, ...days.map((d) => d.cost_usd)), 4);
  const pad = { top: 16, right: 12, bottom: 34, left: axisRoom(axis) };
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const max = axis.max;
  const svg = s("svg", {
    class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "Cost per day",
  });
  for (const tick of axis.ticks) {
    const y = pad.top + innerH - (innerH * tick.value) / max;
    svg.append(
      s("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "grid" }),
      s("text", { x: pad.left - 8, y: y + 4, class: "axis", "text-anchor": "end" }, tick.label),
    );
  }
  const slot = innerW / Math.max(days.length, 1);
  const barW = Math.max(2, Math.min(48, slot * 0.7));
  const labelEvery = Math.ceil(days.length / 10);
  days.forEach((d, i) => {
    const x = pad.left + slot * i + (slot - barW) / 2;
    const hgt = (innerH * d.cost_usd) / max;
    const bar = s("rect", {
      x, y: pad.top + innerH - hgt, width: barW, height: Math.max(hgt, d.cost_usd > 0 ? 1 : 0),
      rx: 2, class: "bar",
    });
    bar.append(s("title", {}, `${d.key}: ${fmtCost(d.cost_usd)} · ${d.prompts} prompts · ` +
      `${(d.tokens_input + d.tokens_output).toLocaleString()} tokens`));
    svg.append(bar);
    if ((days.length - 1 - i) % labelEvery === 0) { // the newest day always has a label
      svg.append(s("text", {
        x: x + barW / 2, y: height - pad.bottom + 18, class: "axis", "text-anchor": "middle",
      }, d.key.slice(5)));
    }
  });
  svg.append(s("line", {
    x1: pad.left, x2: width - pad.right, y1: pad.top + innerH, y2: pad.top + innerH,
    class: "baseline",
  }));
  return svg;
}

function fillDays(rows) {
  const byDay = new Map(rows.filter((r) => r.key).map((r) => [r.key, r]));
  if (byDay.size === 0) return [];
  const keys = [...byDay.keys()].sort();
  const out = [];
  const start = new Date(keys[0] + "T00:00:00Z");
  const end = new Date(keys[keys.length - 1] + "T00:00:00Z");
  // At least two weeks, so a young database does not draw one giant bar; at most 120 days.
  const first = new Date(Math.min(Math.max(start.getTime(), end.getTime() - 119 * 86400000),
    end.getTime() - 13 * 86400000));
  for (let t = first.getTime(); t <= end.getTime(); t += 86400000) {
    const key = new Date(t).toISOString().slice(0, 10);
    out.push(byDay.get(key) ||
      { key, cost_usd: 0, prompts: 0, tokens_input: 0, tokens_output: 0 });
  }
  return out;
}

/** A step line of cumulative cost over time from a list of prompts ({created_at, cost_usd}). */
export function cumulativeCostChart(prompts, { width = 760, height = 260 } = {}) {
  const points = [];
  let total = 0;
  const sorted = [...prompts].sort((a, b) => a.created_at.localeCompare(b.created_at));
  for (const p of sorted) {
    total += Number(p.cost_usd || 0);
    points.push({ t: new Date(p.completed_at || p.created_at).getTime(), v: total });
  }
  const svg = s("svg", {
    class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "Cumulative cost",
  });
  if (points.length === 0) return svg;
  const axis = costAxis(total, 3);
  const pad = { top: 14, right: 16, bottom: 28, left: axisRoom(axis) };
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const t0 = points[0].t;
  const t1 = Math.max(points[points.length - 1].t, t0 + 1000);
  const max = axis.max;
  const x = (t) => pad.left + (innerW * (t - t0)) / (t1 - t0);
  const y = (v) => pad.top + innerH - (innerH * v) / max;
  for (const tick of axis.ticks) {
    const gy = y(tick.value);
    svg.append(
      s("line", { x1: pad.left, x2: width - pad.right, y1: gy, y2: gy, class: "grid" }),
      s("text", { x: pad.left - 8, y: gy + 4, class: "axis", "text-anchor": "end" }, tick.label),
    );
  }
  let d = `M ${x(t0)} ${y(0)}`;
  for (const p of points) d += ` H ${x(p.t)} V ${y(p.v)}`;
  d += ` H ${x(t1)}`;
  svg.append(s("path", { d: d + ` V ${y(0)} Z`, class: "area" }));
  svg.append(s("path", { d, class: "line" }));
  for (const p of points) {
    const dot = s("circle", { cx: x(p.t), cy: y(p.v), r: 3, class: "dot" });
    dot.append(s("title", {},
      `${new Date(p.t).toLocaleTimeString(undefined, { hour12: false })}: ${fmtCost(p.v)}`));
    svg.append(dot);
  }
  const fmt = (t) => new Date(t).toLocaleTimeString(undefined, { hour12: false });
  svg.append(
    s("text", { x: pad.left, y: height - 8, class: "axis", "text-anchor": "start" }, fmt(t0)),
    s("text", { x: width - pad.right, y: height - 8, class: "axis", "text-anchor": "end" },
      fmt(t1)),
  );
  return svg;
}
