r"""The shop drawn as the lesson draws it (issue 28): users, products and orders on top, each
with its own database; the bus across the middle; the query service ("Service D") under
it with its read model. The page's script (SCRIPT) brings it to life from each look.

      ╭──────────────────────────────╮     orders' calls (direct-call purchases)
    ┌ users ┐   ┌ products ┐ ╌ ┌ orders ┐     each: state, rows in its file, its outbox
       │ \          │  ╎          │ /        solid: its relay hands events to the bus
    ═══════════════ bus ═══════════════      dashed (under the bus): direct-call's reads
                    │    ╎
               ┌ query · D ┐                 its read model: position, behind the bus

A link (a caller's calls to one callee) with a fault injected (msshop chaos CALLER --to
CALLEE, or Break it) is drawn red, with what it is.

A commit (a service's rows grow) sends a dot down its relay edge, and the read model
applying events sends one from the bus to the query service. The files an answer from the
Ask panel touched are lit. The toggle "monolith" swaps the picture for the one the lesson
starts from: one process, one database, one join.
"""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT = 1200, 430
BOX_W, BOX_H = 320, 110
# where each part is drawn: its box (x, y, width, height) on the WIDTH x HEIGHT canvas
BOXES = {"users": (40, 40, BOX_W, BOX_H), "products": (440, 40, BOX_W, BOX_H),
         "orders": (840, 40, BOX_W, BOX_H), "bus": (40, 195, 1120, 60),
         "query": (440, 310, BOX_W, BOX_H)}
SERVICES = ("users", "products", "orders")
# each link, caller -> callee: its path, and where what is injected into it is said
LINKS = {
    ("query", "users"): ("M 470 310 L 250 150", (300, 290)),
    ("query", "products"): ("M 660 310 L 660 150", (670, 290)),
    ("query", "orders"): ("M 730 310 L 950 150", (880, 290)),
    ("orders", "products"): ("M 840 95 L 760 95", (800, 33)),
    ("orders", "users"): ("M 900 40 C 900 0, 300 0, 300 40", (600, 24)),
}


def svg() -> str:
    calls = "\n".join(_link(caller, callee) for caller, callee in LINKS)
    relays = "\n".join(_relay(name) for name in SERVICES)
    boxes = "\n".join(_box(name) for name in BOXES)
    labels = "\n".join(_label(caller, callee) for caller, callee in LINKS)
    return (f'<svg id="picture" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="the '
            f'shop: users, products and orders, each with its own database, the bus between '
            f'them, and the query service with its read model">\n'
            f'<g id="shop">\n{calls}\n{relays}\n{_read()}\n{boxes}\n{labels}\n'
            f'<defs><circle id="dot-model" r="9"/></defs><g id="dots"></g></g>\n'
            f'{_monolith()}\n</svg>')


def _box(name: str) -> str:
    x, y, w, h = BOXES[name]
    label = {"query": "query · Service D"}.get(name, name)
    # data-fit: the width a line may take; a longer one is squeezed into it (fit())
    if name == "bus":  # one line: a bar across the picture
        lines = (f'<text class="line1" x="{x + 140}" y="{y + 38}" data-fit="480"></text>'
                 f'<text class="line2" x="{x + 640}" y="{y + 38}" data-fit="{w - 740}">'
                 '</text>')
        title_y = y + 38
    else:
        lines = (f'<text class="line1" x="{x + 16}" y="{y + 62}" data-fit="{w - 32}">'
                 f'</text><text class="line2" x="{x + 16}" y="{y + 90}" '
                 f'data-fit="{w - 32}"></text>')
        title_y = y + 30
    return (f'<g class="part" id="part-{name}" data-part="{name}" tabindex="0" '
            f'role="group" aria-label="{label}">'
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="10"/>'
            f'<text class="name" x="{x + 16}" y="{title_y}">{escape(label)}</text>'
            f'<text class="state" x="{x + w - 16}" y="{title_y}" text-anchor="end">…</text>'
            f'{lines}</g>')


def _relay(name: str) -> str:
    x, y, _, h = BOXES[name]
    bus_y = BOXES["bus"][1]
    return (f'<line class="edge" id="edge-{name}" x1="{x + 100}" y1="{y + h}" '
            f'x2="{x + 100}" y2="{bus_y}"/>')


def _read() -> str:
    _, bus_y, _, bus_h = BOXES["bus"]
    x, y, _, _ = BOXES["query"]
    return (f'<line class="edge" id="edge-query" x1="{x + 100}" y1="{bus_y + bus_h}" '
            f'x2="{x + 100}" y2="{y}"/>')


def _link(caller: str, callee: str) -> str:
    path, _ = LINKS[caller, callee]
    return (f'<g class="link" id="link-{caller}-{callee}" data-caller="{caller}" '
            f'data-callee="{callee}"><path d="{path}"/></g>')


def _label(caller: str, callee: str) -> str:
    """What a link carries, said over it: drawn after the boxes, so none hides it."""
    _, (x, y) = LINKS[caller, callee]
    return (f'<text class="link-label" id="label-{caller}-{callee}" x="{x}" y="{y}" '
            f'text-anchor="middle"></text>')


def _monolith() -> str:
    return ('<g id="monolith" hidden role="group" aria-label="the monolith: '
            'one process, one database">'
            '<rect x="200" y="40" width="800" height="320" rx="14"/>'
            '<text class="name" x="230" y="90">monolith · one process</text>'
            '<rect class="file" x="230" y="120" width="740" height="150" rx="8"/>'
            '<text class="line1" x="250" y="160">shop.db: one database, every table</text>'
            '<text class="line2" id="monolith-rows" x="250" y="200"></text>'
            '<text class="line2" x="250" y="240">user-orders: one SQL join, always current'
            '</text>'
            '<text class="line2" x="230" y="320">no bus, no copies, no lag; and no team '
            'deploys its part alone</text></g>')


STYLE = """
  svg#picture { display: block; width: 100%; height: 100%; }
  svg#picture [hidden] { display: none; }
  .part rect, #monolith > rect { fill: #ffffff; stroke: #16a34a; stroke-width: 4; }
  .part.degraded rect { stroke: #d97706; fill: #fffbeb; }
  .part.down rect { stroke: #dc2626; fill: #fef2f2; }
  .part.touched rect { fill: #fef9c3; stroke-width: 7; }
  .part .name, #monolith .name { font-size: 24px; font-weight: 650; }
  .part .state { font-size: 20px; fill: #16a34a; font-weight: 600; }
  .part.degraded .state { fill: #b45309; }
  .part.down .state { fill: #b91c1c; }
  .part .line1, .part .line2, #monolith text { font-size: 19px; fill: #334155;
                                               font-variant-numeric: tabular-nums; }
  #monolith rect.file { fill: #f1f5f9; stroke: #64748b; stroke-width: 2; }
  .edge { stroke: #94a3b8; stroke-width: 4; }
  .edge.down { stroke: #dc2626; stroke-dasharray: 8 6; }
  .link path { fill: none; stroke: #cbd5e1; stroke-width: 3; stroke-dasharray: 10 8; }
  .link.used path { stroke: #ca8a04; stroke-width: 6; }
  .link.down path, .link.faulty path { stroke: #dc2626; }
  .link.faulty path { stroke-width: 6; }
  .link.busy path { stroke: #0891b2; stroke-width: 6; stroke-dasharray: none; }
  .link.busy.faulty path { stroke: #dc2626; }

  .link-label { font-size: 19px; font-weight: 600; fill: #0e7490; paint-order: stroke;
                stroke: #f8fafc; stroke-width: 5; }
  .link-label.faulty { fill: #b91c1c; }
  #dots circle { fill: #7c3aed; }
  .part { cursor: pointer; }
  .part:focus-visible { outline: 3px solid #f59e0b; }
"""

SCRIPT = """
const number = n => (n === null || n === undefined) ? "-" : n.toLocaleString("en");
const total = part => Object.values(part.rows || {}).reduce((a, b) => a + b, 0);
// `waited`: how many of the sagas listed wait for this part's move
function lines(part, waited) {
  const waits = waited ? `${number(waited)} ${waited > 1 ? "sagas wait" : "saga waits"}` : "";
  if (part.nats) return [part.nats, part.problems.join(", ") || "JetStream keeps the log"];
  if (part.state === "down") return [part.problems[0] || "not answering", waits];
  if (part.name === "bus") {
    return [`the event log: head at ${number(part.head)}`,
            ""];
  }
  if (part.name === "query") {
    return [`read model at ${number(part.position)}`, `${number(part.behind)} behind the bus`];
  }
  const waiting = part.outbox ? `, ${number(part.outbox)} events waiting` : "";
  const sagas = inFlight(part);
  return [`${number(total(part))} rows in ${part.name}.db`,
          `outbox${waiting || ": empty"}` + (sagas ? ` · ${number(sagas)} in flight` : "")
          + (waits ? ` · ${waits}` : "")];
}
// a line of a box, squeezed into its box when it is longer (a down part's reason, a busy
// outbox): never over the box's edge
function fit(text, words) {
  if (text.textContent !== words) {
    text.textContent = words;
    text.removeAttribute("textLength");
  }
  const room = +text.dataset.fit;  // measured while drawn (0 while the picture is hidden)
  if (words && !text.hasAttribute("textLength") && text.getComputedTextLength() > room) {
    text.setAttribute("lengthAdjust", "spacingAndGlyphs");
    text.setAttribute("textLength", room);
  }
}
// orders' sagas not ended: the choreographed, and the orchestrated by state
const inFlight = part => part.in_flight ? part.in_flight.saga +
  Object.values(part.in_flight.saga_orchestrated).reduce((a, b) => a + b, 0) : 0;
// a nats bus is its nodes (bus, bus-2, bus-3): one box, as bad as its worst node
const NODE = /^bus(-[0-9]+)?$/;
function merged(parts) {
  const nodes = parts.filter(p => p.kind === "nats-server" && NODE.test(p.name));
  if (!nodes.length) return parts;
  const up = nodes.filter(p => p.state === "up").length;
  const state = up === nodes.length ? "up" : up === 0 ? "down" : "degraded";
  const down = nodes.filter(p => p.state !== "up").map(p => `${p.name} ${p.state}`);
  const bus = {name: "bus", kind: "nats-server", state, faults: [], rows: {},
               problems: down, nats: `nats: ${up} of ${nodes.length} node(s) up`};
  return [...parts.filter(p => !nodes.includes(p)), bus];
}
// a dot along an edge: a commit on its way to the bus, or events into the read model
function travel(edgeId) {
  const edge = document.getElementById(edgeId);
  if (!edge || document.hidden || matchMedia("(prefers-reduced-motion: reduce)").matches) {
    return;
  }
  const [x1, y1, x2, y2] = ["x1", "y1", "x2", "y2"].map(a => +edge.getAttribute(a));
  const dot = document.getElementById("dot-model").cloneNode();  // an SVG circle
  dot.removeAttribute("id");
  document.getElementById("dots").append(dot);
  const moving = dot.animate([{transform: `translate(${x1}px, ${y1}px)`},
                              {transform: `translate(${x2}px, ${y2}px)`}],
                             {duration: 450, easing: "ease-in"});
  moving.onfinish = () => dot.remove();
}
// a link's calls a second over about the last second, from the caller's count of them
const CALL_WINDOW = 1.0;
const counted = new Map();
function callRate(link, at, count) {
  const seen = counted.get(link) || [];
  seen.push([at, count]);
  while (seen.length > 2 && seen[1][0] <= at - CALL_WINDOW) seen.shift();
  counted.set(link, seen);
  const [[then, before], [now, after]] = [seen[0], seen[seen.length - 1]];
  return now > then ? Math.max(0, after - before) / (now - then) : 0;
}
let previous = null;
function drawPicture(snapshot) {
  const parts = merged(snapshot.parts);
  for (const part of parts) {
    const box = document.getElementById(`part-${part.name}`);
    if (!box) continue;
    box.classList.toggle("down", part.state === "down");
    box.classList.toggle("degraded", part.state === "degraded");
    box.querySelector(".state").textContent =
      part.state === "up" ? (part.faults.length ? `up · ${part.faults.join(", ")}` : "up")
                          : part.state;
    const waited = (snapshot.sagas || []).filter(s => s.waits_for === part.name).length;
    const [first, second] = lines(part, waited);
    fit(box.querySelector(".line1"), first);
    fit(box.querySelector(".line2"), second);
    box.setAttribute("aria-label", `${part.name}: ${part.state}; ${first} ${second}`);
    const before = previous && previous.get(part.name);
    const edge = document.getElementById(`edge-${part.name}`);
    if (edge) edge.classList.toggle("down", part.state === "down");
    for (const link of document.querySelectorAll(`.link[data-callee="${part.name}"]`)) {
      link.classList.toggle("down", part.state === "down");
    }
    for (const link of document.querySelectorAll(`.link[data-caller="${part.name}"]`)) {
      const callee = link.dataset.callee;
      const fault = (part.links || {})[callee] || "";
      const rate = callRate(link.id, snapshot.at, (part.calls || {})[callee] || 0);
      link.classList.toggle("faulty", fault !== "");
      link.classList.toggle("busy", rate > 0);
      const label = document.getElementById(link.id.replace("link-", "label-"));
      label.classList.toggle("faulty", fault !== "");
      label.textContent =
        [fault, rate > 0 ? `${rate < 10 ? rate.toFixed(1) : number(Math.round(rate))} calls/s`
                         : ""].filter(Boolean)
          .join(" · ");
    }
    if (before && part.name !== "query" && total(part) > total(before)) {
      travel(`edge-${part.name}`);
    }
    if (before && part.name === "query" && (part.position || 0) > (before.position || 0)) {
      travel("edge-query");
    }
  }
  previous = new Map(parts.map(p => [p.name, p]));
  const rows = name => total(previous.get(name) || {});
  document.getElementById("monolith-rows").textContent =
    `users ${number(rows("users"))} rows · products ${number(rows("products"))} · ` +
    `orders ${number(rows("orders"))}`;
}
// the files the last answer touched, lit on the picture; and direct-call's calls
function light(files, strategies) {
  const owners = new Set(files.map(f => f.replace(/[.]db$/, "")));
  for (const part of document.querySelectorAll("#shop .part")) {
    part.classList.toggle("touched", owners.has(part.dataset.part));
  }
  for (const link of document.querySelectorAll('.link[data-caller="query"]')) {
    link.classList.toggle("used", strategies.includes("direct-call") &&
                          owners.has(link.dataset.callee));
  }
}
document.getElementById("monolith-toggle").addEventListener("click", event => {
  const showing = event.currentTarget.getAttribute("aria-pressed") !== "true";
  event.currentTarget.setAttribute("aria-pressed", String(showing));
  document.getElementById("shop").toggleAttribute("hidden", showing);
  document.getElementById("monolith").toggleAttribute("hidden", !showing);
});
"""
