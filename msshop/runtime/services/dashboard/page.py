"""The dashboard's page (issue 28): the shop drawn as the lesson draws it, updated live from
the dashboard's stream (GET /live, server-sent events). One HTML document: its style and
script inline (allowed by the page's nonce alone, Content-Security-Policy), nothing fetched
from anywhere else, readable on a projector at 1280x720.

    users ─┐   products ─┐   orders ─┐        each with its own file (its rows)
           └──────────── bus ────────┘        the log, its head
                          │
                    query (Service D)         its read model: position, behind

A part that does not answer turns red within a second, with why; a degraded one amber.
Under users, the last two minutes of replication as this tab saw them: the events waiting
in the outboxes, and the read model behind the bus.
"""

from __future__ import annotations

from html import escape

# where each part is drawn: (x, y) of its box's top left, on a 1200 x 560 canvas
LAYOUT = {"users": (40, 30), "products": (440, 30), "orders": (840, 30),
          "bus": (440, 250), "query": (440, 410)}
BOX_W, BOX_H = 320, 110


# the last minutes of replication, drawn under users (x, y, width, height)
HISTORY = (40, 290, 360, 200)
HISTORY_SECONDS = 120


def page(csrf: str, nonce: str, sandbox: str) -> str:
    boxes = "\n".join(_box(name, x, y) for name, (x, y) in LAYOUT.items())
    edges = "\n".join(_edge(name) for name in ("users", "products", "orders", "query"))
    return PAGE.format(csrf=escape(csrf), nonce=escape(nonce), sandbox=escape(sandbox),
                       boxes=boxes + "\n" + _history(), edges=edges,
                       script=SCRIPT.replace("HISTORY_SECONDS", str(HISTORY_SECONDS))
                       .replace("HISTORY_BOX", str(list(HISTORY))))


def _history() -> str:
    """The frame of the last minutes' chart; the script draws its lines."""
    x, y, w, h = HISTORY
    return (f'<g id="history" role="img" aria-label="events waiting in the outboxes, and '
            f'the read model behind the bus, over the last minutes">'
            f'<text class="title" x="{x}" y="{y - 10}">the last {HISTORY_SECONDS // 60} '
            f'minutes</text>'
            f'<rect class="frame" x="{x}" y="{y}" width="{w}" height="{h}"/>'
            f'<polyline id="line-waiting" class="waiting" points=""/>'
            f'<polyline id="line-behind" class="behind" points=""/>'
            f'<text id="history-top" class="axis" x="{x + 6}" y="{y + 18}">0</text>'
            f'<text class="key waiting" x="{x}" y="{y + h + 24}">— events waiting in the '
            f'outboxes</text>'
            f'<text class="key behind" x="{x}" y="{y + h + 46}">— read model behind the '
            f'bus</text></g>')


def _box(name: str, x: int, y: int) -> str:
    label = {"query": "query · Service D", "bus": "bus"}.get(name, name)
    return (f'<g class="part" id="part-{name}" data-part="{name}" tabindex="0" '
            f'role="group" aria-label="{label}">'
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="10"/>'
            f'<text class="name" x="{x + 16}" y="{y + 30}">{escape(label)}</text>'
            f'<text class="state" x="{x + BOX_W - 16}" y="{y + 30}" '
            f'text-anchor="end">…</text>'
            f'<text class="line1" x="{x + 16}" y="{y + 62}"></text>'
            f'<text class="line2" x="{x + 16}" y="{y + 90}"></text></g>')


def _edge(name: str) -> str:
    x, y = LAYOUT[name]
    bus_x, bus_y = LAYOUT["bus"]
    if name == "query":  # the bus hands its events down to the read model
        return (f'<line class="edge" id="edge-{name}" x1="{bus_x + BOX_W / 2}" '
                f'y1="{bus_y + BOX_H}" x2="{x + BOX_W / 2}" y2="{y}"/>')
    return (f'<line class="edge" id="edge-{name}" x1="{x + BOX_W / 2}" y1="{y + BOX_H}" '
            f'x2="{bus_x + BOX_W / 2}" y2="{bus_y}"/>')


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{csrf}">
<title>msshop · {sandbox}</title>
<style nonce="{nonce}">
  body {{ font: 16px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
         background: #f8fafc; color: #0f172a; }}
  header {{ display: flex; align-items: center; gap: 1rem; padding: .6rem 1.2rem;
           background: #0f172a; color: #f8fafc; }}
  header h1 {{ font-size: 1.1rem; margin: 0; font-weight: 600; }}
  header .when {{ margin-left: auto; font-variant-numeric: tabular-nums; color: #cbd5e1; }}
  header button {{ font: inherit; background: #334155; color: #f8fafc; border: 0;
                   padding: .3rem .8rem; border-radius: 6px; cursor: pointer; }}
  header button:focus-visible, .part:focus-visible {{ outline: 3px solid #f59e0b; }}
  main {{ max-width: 1240px; margin: 0 auto; padding: .6rem 1rem 0; }}
  svg {{ width: 100%; height: auto; max-height: calc(100vh - 10rem); display: block; }}
  .break {{ display: flex; flex-wrap: wrap; align-items: center; gap: .5rem;
            padding: .5rem 0; }}
  .break select, .break button {{ font: inherit; padding: .25rem .7rem; border-radius: 6px;
                                  border: 1px solid #94a3b8; background: #fff; }}
  .break button {{ cursor: pointer; }}
  .break button:focus-visible, .break select:focus-visible {{ outline: 3px solid #f59e0b; }}
  .break output {{ margin-left: .5rem; color: #334155; }}
  .part rect {{ fill: #ffffff; stroke: #16a34a; stroke-width: 4; }}
  .part.degraded rect {{ stroke: #d97706; fill: #fffbeb; }}
  .part.down rect {{ stroke: #dc2626; fill: #fef2f2; }}
  .part .name {{ font-size: 22px; font-weight: 650; }}
  .part .state {{ font-size: 18px; fill: #16a34a; font-weight: 600; }}
  .part.degraded .state {{ fill: #b45309; }}
  .part.down .state {{ fill: #b91c1c; }}
  .part .line1, .part .line2 {{ font-size: 17px; fill: #334155;
                                font-variant-numeric: tabular-nums; }}
  .edge {{ stroke: #94a3b8; stroke-width: 3; }}
  #history .frame {{ fill: #ffffff; stroke: #cbd5e1; stroke-width: 2; }}
  #history .title {{ font-size: 18px; font-weight: 600; fill: #334155; }}
  #history .axis {{ font-size: 15px; fill: #64748b; }}
  #history polyline {{ fill: none; stroke-width: 3; }}
  #history .key {{ font-size: 16px; }}
  #history polyline.waiting {{ stroke: #7c3aed; }}
  #history polyline.behind {{ stroke: #0891b2; }}
  #history text.waiting {{ fill: #6d28d9; }}
  #history text.behind {{ fill: #0e7490; }}
  .edge.down {{ stroke: #dc2626; stroke-dasharray: 8 6; }}
  #status {{ min-height: 1.4em; margin: 0; color: #475569; }}
</style>
</head>
<body>
<header><h1>msshop · {sandbox}</h1><span class="when" id="when" aria-live="polite">
connecting…</span><button id="logout" type="button">Log out</button></header>
<main>
<svg viewBox="0 0 1200 560" role="img" aria-label="the shop: users, products and orders,
each with its own database, the bus between them, and the query service with its read
model">
{edges}
{boxes}
</svg>
<section class="break" aria-label="break it">
<label>Break <select id="target">
<option>users</option><option selected>products</option><option>orders</option>
<option>query</option><option>bus</option></select></label>
<button type="button" data-action="kill">kill</button>
<button type="button" data-action="stop">stop</button>
<button type="button" data-action="start">start</button>
<button type="button" data-action="restart">restart</button>
<button type="button" data-action="slow">slow (+300 ms)</button>
<button type="button" data-action="failing">failing (50%)</button>
<button type="button" data-action="heal">heal</button>
<output id="done" aria-live="polite"></output>
</section>
<p id="status" role="status"></p>
</main>
<script nonce="{nonce}">
{script}
</script>
</body>
</html>
"""

SCRIPT = """
"use strict";
const csrf = document.querySelector('meta[name="csrf"]').content;
const number = n => (n === null || n === undefined) ? "-" : n.toLocaleString("en");
function rows(part) {
  const total = Object.values(part.rows || {}).reduce((a, b) => a + b, 0);
  return `${number(total)} rows in ${part.name}.db`;
}
function lines(part) {
  if (part.nats) return [part.nats, part.problems.join(", ") || "JetStream keeps the log"];
  if (part.state === "down") return [part.problems[0] || "not answering", ""];
  if (part.name === "bus") return [`the event log: head at ${number(part.head)}`, ""];
  if (part.name === "query") {
    return [`read model at ${number(part.position)}`, `${number(part.behind)} behind the bus`];
  }
  const waiting = part.outbox ? `, ${number(part.outbox)} events waiting` : "";
  return [rows(part), `outbox${waiting || ": empty"}`];
}
// a nats bus is its nodes (bus, bus-2, bus-3): one box, as bad as its worst node
const NODE = /^bus(-[0-9]+)?$/;
function merged(parts) {
  const nodes = parts.filter(p => p.kind === "nats-server" && NODE.test(p.name));
  if (!nodes.length) return parts;
  const up = nodes.filter(p => p.state === "up").length;
  const state = up === nodes.length ? "up" : up === 0 ? "down" : "degraded";
  const down = nodes.filter(p => p.state !== "up").map(p => `${p.name} ${p.state}`);
  const bus = {name: "bus", kind: "nats-server", state, faults: 0, rows: {},
               problems: down, nats: `nats: ${up} of ${nodes.length} node(s) up`};
  return [...parts.filter(p => !nodes.includes(p)), bus];
}
function draw(snapshot) {
  for (const part of merged(snapshot.parts)) {
    const box = document.getElementById(`part-${part.name}`);
    if (!box) continue;
    box.classList.toggle("down", part.state === "down");
    box.classList.toggle("degraded", part.state === "degraded");
    box.querySelector(".state").textContent =
      part.state === "up" ? (part.faults ? `up · ${part.faults} fault(s)` : "up") : part.state;
    const [first, second] = lines(part);
    box.querySelector(".line1").textContent = first;
    box.querySelector(".line2").textContent = second;
    box.setAttribute("aria-label", `${part.name}: ${part.state}; ${first} ${second}`);
    const edge = document.getElementById(`edge-${part.name}`);
    if (edge) edge.classList.toggle("down", part.state === "down");
  }
  document.getElementById("when").textContent =
    "as of " + new Date(snapshot.at * 1000).toLocaleTimeString();
  remember(snapshot);
  window.__snapshot = snapshot;
}
// the last minutes, kept by this tab from the looks it was handed
const history = [];
function remember(snapshot) {
  const waiting = snapshot.parts.reduce((sum, p) => sum + (p.outbox || 0), 0);
  const query = snapshot.parts.find(p => p.name === "query");
  history.push({at: snapshot.at, waiting, behind: query ? (query.behind || 0) : 0});
  while (history.length && history[0].at < snapshot.at - HISTORY_SECONDS) history.shift();
  const [x, y, w, h] = HISTORY_BOX;
  const top = Math.max(10, ...history.map(e => Math.max(e.waiting, e.behind)));
  const point = (e, value) =>
    `${(x + w * (1 - (snapshot.at - e.at) / HISTORY_SECONDS)).toFixed(1)},` +
    `${(y + h - h * value / top).toFixed(1)}`;
  document.getElementById("line-waiting").setAttribute(
    "points", history.map(e => point(e, e.waiting)).join(" "));
  document.getElementById("line-behind").setAttribute(
    "points", history.map(e => point(e, e.behind)).join(" "));
  document.getElementById("history-top").textContent = number(top);
  window.__history = history.length;
}
const live = new EventSource("/live");
live.onmessage = message => draw(JSON.parse(message.data));
live.onerror = () => {
  document.getElementById("status").textContent =
    "the dashboard does not answer: is the sandbox up? (msshop status)";
};
live.onopen = () => { document.getElementById("status").textContent = ""; };
for (const button of document.querySelectorAll(".break button")) {
  button.addEventListener("click", async () => {
    const said = document.getElementById("done");
    said.textContent = "…";
    const answer = await fetch("/action", {
      method: "POST", headers: {"x-csrf-token": csrf, "content-type": "application/json"},
      body: JSON.stringify({part: document.getElementById("target").value,
                            action: button.dataset.action})});
    const body = await answer.json();
    said.textContent = answer.ok ? body.done : body.error;
  });
}
document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/logout", {method: "POST", headers: {"x-csrf-token": csrf}});
  location.reload();
});
"""
