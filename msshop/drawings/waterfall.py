"""A trace's waterfall, drawn in the browser: the call tree's spans as bars on one time axis,
each span's details on a click (or Enter), the event lineage of replicated rows. The trace
page (`msshop trace ID --export html`) and the dashboard's Ask both draw with it.

`SCRIPT` defines `drawWaterfall(root, trace)`: `root` an element to fill, `trace`
{"trace_id", "title", "spans", "colours"}. Everything from the trace goes on the page as
text (textContent), never as markup, so a product titled `<script>` shows as that title.
Bars are placed through the CSS object model (element.style), which a page's
Content-Security-Policy allows where a style attribute would not be.
"""

from __future__ import annotations

# each service's colour, as the terminal's timeline has them
COLOURS = {"cli": "#6b7280", "ui": "#6b7280", "query": "#16a34a", "users": "#0891b2",
           "products": "#c026d3", "orders": "#ca8a04", "bus": "#2563eb"}

STYLE = """
  .waterfall .row { display: grid; grid-template-columns: 22rem 1fr 6rem;
                    align-items: center; height: 1.6rem; border-bottom: 1px solid #f3f4f6; }
  .waterfall .row:hover { background: #f9fafb; }
  .waterfall .label { white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
                      padding-right: .5rem; }
  .waterfall .service { font-weight: 600; }
  .waterfall .track { position: relative; height: 1rem; }
  .waterfall .bar { position: absolute; top: 0; height: 1rem; min-width: 2px;
                    border-radius: 2px; cursor: pointer; border: 0; padding: 0; }
  .waterfall .bar:focus-visible { outline: 3px solid #f59e0b; }
  .waterfall .bar.error { outline: 2px solid #dc2626; }
  .waterfall .bar.selected { outline: 2px solid #111827; }
  .waterfall .duration { text-align: right; color: #6b7280;
                         font-variant-numeric: tabular-nums; }
  .waterfall .axis { display: grid; grid-template-columns: 22rem 1fr 6rem; color: #6b7280;
                     font-size: 12px; margin-top: .25rem; }
  .waterfall .axis .ticks { display: flex; justify-content: space-between; }
  .waterfall .details { margin-top: 1rem; padding: .75rem 1rem; border: 1px solid #e5e7eb;
                        border-radius: 6px; min-height: 3rem; }
  .waterfall .details table { border-collapse: collapse; }
  .waterfall .details td { padding: .1rem .75rem .1rem 0; vertical-align: top; }
  .waterfall .details td:first-child { color: #6b7280; white-space: nowrap; }
  .waterfall .lineage li { font-family: ui-monospace, monospace; font-size: 13px; }
"""

SCRIPT = """
function drawWaterfall(root, trace) {
  "use strict";
  const spans = trace.spans;
  const began = Math.min(...spans.map(s => s.start));
  const ended = Math.max(...spans.map(s => s.start + s.duration_ms / 1000));
  const total = Math.max((ended - began) * 1000, 1e-6);
  const byId = new Map(spans.map(s => [s.span_id, s]));
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = String(text);
    return node;
  };
  function ordered() {  // the call tree's order, each with its depth
    const children = new Map();
    const roots = [];
    for (const s of spans) {
      if (s.parent_id && byId.has(s.parent_id) && s.parent_id !== s.span_id) {
        if (!children.has(s.parent_id)) children.set(s.parent_id, []);
        children.get(s.parent_id).push(s);
      } else roots.push(s);
    }
    const out = [], seen = new Set();
    const walk = (s, depth) => {
      if (seen.has(s.span_id)) return;
      seen.add(s.span_id);
      out.push([s, depth]);
      for (const c of children.get(s.span_id) || []) walk(c, depth + 1);
    };
    roots.forEach(s => walk(s, 0));
    spans.forEach(s => walk(s, 0));
    return out;
  }
  function what(s) {
    const a = s.attributes || {};
    if (a["db.system"]) {
      const rows = a["msshop.rows"];
      return `${a["db.name"]} ${a["db.operation"]} ${a["db.sql.table"] || ""}` +
             (Number.isInteger(rows) ? ` · ${rows} row${rows === 1 ? "" : "s"}` : "");
    }
    if (a["peer.service"] && s.kind === "client") return `→ ${a["peer.service"]}`;
    return s.name;
  }
  const details = el("div", "details", "Click a bar (or Tab to it, then Enter) to see that span.");
  function show(s, bar) {
    root.querySelectorAll(".bar.selected").forEach(b => b.classList.remove("selected"));
    bar.classList.add("selected");
    details.replaceChildren();
    details.append(el("h2", "", `${s.service} · ${s.name}`));
    const table = el("table");
    const row = (k, v) => {
      const tr = el("tr");
      tr.append(el("td", "", k), el("td", "", typeof v === "string" ? v : JSON.stringify(v)));
      table.append(tr);
    };
    row("kind", s.kind);
    row("status", s.status);
    row("started", `${((s.start - began) * 1000).toFixed(3)} ms into the trace`);
    row("duration", `${s.duration_ms.toFixed(3)} ms`);
    row("span id", s.span_id);
    row("parent", s.parent_id || "(none)");
    for (const [k, v] of Object.entries(s.attributes || {})) {
      if (k !== "msshop.events") row(k, v);
    }
    details.append(table);
    const events = (s.attributes || {})["msshop.events"];
    if (Array.isArray(events) && events.length) {
      details.append(el("h3", "", "event lineage: the events these rows came from"));
      const list = el("ul", "lineage");
      for (const [kind, source, position] of events) {
        list.append(el("li", "", `${kind} from ${source} at bus position ${position}`));
      }
      details.append(list);
    }
  }
  root.replaceChildren();
  root.classList.add("waterfall");
  const rows = el("div", "rows");
  for (const [s, depth] of ordered()) {
    const row = el("div", "row");
    const label = el("div", "label");
    label.style.paddingLeft = `${Math.min(depth, 6) * 0.9}rem`;
    label.append(el("span", "service", s.service), document.createTextNode(" " + what(s)));
    const track = el("div", "track");
    const bar = el("button", "bar" + (s.status === "error" ? " error" : ""));
    bar.type = "button";
    bar.dataset.span = s.span_id;
    bar.title = `${s.service} ${s.name} ${s.duration_ms.toFixed(2)} ms`;
    bar.setAttribute("aria-label", `${s.service} ${what(s)}: ${s.duration_ms.toFixed(2)} ms`);
    bar.style.left = `${((s.start - began) * 1000 / total) * 100}%`;
    bar.style.width = `${Math.max(s.duration_ms / total * 100, 0.3)}%`;
    bar.style.background = trace.colours[s.service] || "#9ca3af";
    bar.addEventListener("click", () => show(s, bar));
    track.append(bar);
    row.append(label, track, el("div", "duration", `${s.duration_ms.toFixed(2)} ms`));
    rows.append(row);
  }
  const axis = el("div", "axis");
  const ticks = el("span", "ticks");
  for (let i = 0; i <= 4; i++) ticks.append(el("span", "", `${(total * i / 4).toFixed(2)} ms`));
  axis.append(el("span"), ticks, el("span"));
  root.append(rows, axis, details);
  return {total, services: [...new Set(spans.map(s => s.service))]};
}
"""
