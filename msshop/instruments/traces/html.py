"""A trace as one self-contained HTML page (`msshop trace ID --export html`): the
waterfall, each span's details on a click, and the event lineage of replicated rows. It
opens offline: no CDN, no file beside it; the trace travels inside it as JSON and a small
script draws it.

Everything that comes from the trace is put on the page as text (textContent), never as
markup, so a product titled `<script>` shows as that title.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from msshop.contracts.spans import Span
from msshop.instruments.traces.shape import start

COLOURS = {"cli": "#6b7280", "query": "#16a34a", "users": "#0891b2", "products": "#c026d3",
           "orders": "#ca8a04", "bus": "#2563eb"}


def to_html(spans: Iterable[Span], trace_id: str, title: str = "") -> str:
    spans = sorted(spans, key=start)
    data = json.dumps({"trace_id": trace_id, "title": title, "spans": spans,
                       "colours": COLOURS})
    # inside <script>, "</" would end it early, and U+2028/9 end a JavaScript line
    data = (data.replace("</", "<\\/").replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029"))
    return PAGE.replace("/*TRACE*/null", data).replace(
        "<title>msshop trace</title>", f"<title>msshop trace {trace_id}</title>")


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>msshop trace</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #111827; }
  h1 { font-size: 1.1rem; margin: 0 0 .25rem; }
  .meta { color: #6b7280; margin-bottom: 1rem; }
  .row { display: grid; grid-template-columns: 22rem 1fr 6rem; align-items: center;
         height: 1.6rem; border-bottom: 1px solid #f3f4f6; }
  .row:hover { background: #f9fafb; }
  .label { white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
           padding-right: .5rem; }
  .service { font-weight: 600; }
  .track { position: relative; height: 1rem; }
  .bar { position: absolute; top: 0; height: 1rem; min-width: 2px; border-radius: 2px;
         cursor: pointer; }
  .bar.error { outline: 2px solid #dc2626; }
  .bar.selected { outline: 2px solid #111827; }
  .duration { text-align: right; color: #6b7280; font-variant-numeric: tabular-nums; }
  .axis { display: grid; grid-template-columns: 22rem 1fr 6rem; color: #6b7280;
          font-size: 12px; margin-top: .25rem; }
  .axis .ticks { display: flex; justify-content: space-between; }
  #details { margin-top: 1.25rem; padding: .75rem 1rem; border: 1px solid #e5e7eb;
             border-radius: 6px; min-height: 3rem; }
  #details table { border-collapse: collapse; }
  #details td { padding: .1rem .75rem .1rem 0; vertical-align: top; }
  #details td:first-child { color: #6b7280; white-space: nowrap; }
  .lineage li { font-family: ui-monospace, monospace; font-size: 13px; }
</style>
</head>
<body>
<h1 id="title"></h1>
<div class="meta" id="meta"></div>
<div id="waterfall"></div>
<div class="axis"><span></span><span class="ticks" id="ticks"></span><span></span></div>
<div id="details">Click a bar to see that span.</div>
<script>
"use strict";
const TRACE = /*TRACE*/null;
const spans = TRACE.spans;
const began = Math.min(...spans.map(s => s.start));
const ended = Math.max(...spans.map(s => s.start + s.duration_ms / 1000));
const total = Math.max((ended - began) * 1000, 1e-6);
const byId = new Map(spans.map(s => [s.span_id, s]));

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

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

function show(s, bar) {
  document.querySelectorAll(".bar.selected").forEach(b => b.classList.remove("selected"));
  bar.classList.add("selected");
  const details = document.getElementById("details");
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

document.getElementById("title").textContent = `trace ${TRACE.trace_id}`;
const services = [...new Set(spans.map(s => s.service))];
document.getElementById("meta").textContent =
  `${TRACE.title ? TRACE.title + " · " : ""}${spans.length} spans · ` +
  `${total.toFixed(2)} ms · services: ${services.join(", ")}`;
const waterfall = document.getElementById("waterfall");
for (const [s, depth] of ordered()) {
  const row = el("div", "row");
  const label = el("div", "label");
  label.style.paddingLeft = `${Math.min(depth, 6) * 0.9}rem`;
  label.append(el("span", "service", s.service), document.createTextNode(" " + what(s)));
  const track = el("div", "track");
  const bar = el("div", "bar" + (s.status === "error" ? " error" : ""));
  bar.dataset.span = s.span_id;
  bar.title = `${s.service} ${s.name} ${s.duration_ms.toFixed(2)} ms`;
  bar.style.left = `${((s.start - began) * 1000 / total) * 100}%`;
  bar.style.width = `${Math.max(s.duration_ms / total * 100, 0.3)}%`;
  bar.style.background = TRACE.colours[s.service] || "#9ca3af";
  bar.addEventListener("click", () => show(s, bar));
  track.append(bar);
  row.append(label, track, el("div", "duration", `${s.duration_ms.toFixed(2)} ms`));
  waterfall.append(row);
}
const ticks = document.getElementById("ticks");
for (let i = 0; i <= 4; i++) ticks.append(el("span", "", `${(total * i / 4).toFixed(2)} ms`));
</script>
</body>
</html>
"""
