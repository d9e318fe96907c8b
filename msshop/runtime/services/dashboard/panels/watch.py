"""Watch: the bus's events as they arrive (filtered by type and source), the read model's
dead letters, the questions the query service answered last (one opens in Ask), the last
two minutes of the outbox backlogs and the read model's lag (seeded from the dashboard's
GET /history), and the sagas in flight, each with its step (dashboard/sagas.py).
"""

from __future__ import annotations

# the last minutes of replication (its own small SVG)
HISTORY_W, HISTORY_H = 520, 200
HISTORY_SECONDS = 120

TITLE = "Watch"
SOURCES = ("users", "products", "orders")  # who records events: the filter by source


def html() -> str:
    sources = "".join(f"<option>{n}</option>" for n in SOURCES)
    return HTML.replace("{services}", sources).replace("{history}", _history())


def _history() -> str:
    w, h = HISTORY_W, HISTORY_H
    return (f'<svg id="history" viewBox="0 0 {w} {h + 60}" role="img" aria-label="events '
            f'waiting in the outboxes, and the read model behind the bus, over the last '
            f'minutes"><rect class="frame" x="0" y="0" width="{w}" height="{h}"/>'
            f'<polyline id="line-waiting" class="waiting" points=""/>'
            f'<polyline id="line-behind" class="behind" points=""/>'
            f'<text id="history-top" class="axis" x="6" y="18">0</text>'
            f'<text class="key waiting" x="0" y="{h + 24}">— events waiting in the outboxes'
            f'</text><text class="key behind" x="0" y="{h + 50}">— read model behind the bus'
            f'</text></svg>')


HTML = """
<div class="watch">
<div>
<div class="controls">
<label>type <select id="event-type"><option value="">every type</option></select></label>
<label>source <select id="event-source"><option value="">every source</option>
{services}</select></label>
<span class="hint" id="events-said"></span>
</div>
<ol id="events" aria-label="the bus's latest events, newest first"></ol>
<p id="dead-letters" class="hint"></p>
<div class="controls"><button type="button" id="list-traces">the last questions
answered</button><span class="hint">(the traces the services keep; one opens in Ask)</span>
</div>
<ol id="traces" class="runs"></ol>
</div>
<div><h2>sagas in flight</h2><p id="in-flight" class="hint"></p>
<p class="hint" id="sagas-said" hidden>an orchestrated saga's step is orders' row; where a
choreographed one is, no one service knows: products and users are asked</p>
<ol id="sagas" aria-label="the oldest sagas in flight, each with its step"></ol>
<h2>the last 2 minutes</h2>{history}</div>
</div>
"""

STYLE = """
  .watch { display: grid; grid-template-columns: minmax(0, 1fr) 26rem; gap: 1.5rem; }
  .watch h2 { font-size: 1rem; margin: 0 0 .3rem; }
  .watch h2 + .hint { margin-top: 0; }
  #in-flight { margin: 0 0 .2rem; }
  #sagas-said { margin: 0 0 .4rem; }
  #events { list-style: none; margin: 0; padding: 0; font-variant-numeric: tabular-nums; }
  #events li { padding: .1rem 0; border-bottom: 1px solid #e2e8f0; white-space: nowrap;
               overflow: hidden; text-overflow: ellipsis; }
  #events .type { font-weight: 600; }
  #history { width: 100%; height: auto; }
  #history .frame { fill: #ffffff; stroke: #cbd5e1; stroke-width: 2; }
  #history .axis { font-size: 15px; fill: #64748b; }
  #history polyline { fill: none; stroke-width: 3; }
  #history .key { font-size: 16px; }
  #history polyline.waiting { stroke: #7c3aed; }
  #history polyline.behind { stroke: #0891b2; }
  #history text.waiting { fill: #6d28d9; }
  #history text.behind { fill: #0e7490; }
  #sagas { list-style: none; margin: 0; padding: 0; font-variant-numeric: tabular-nums; }
  #sagas li { padding: .15rem 0; border-bottom: 1px solid #e2e8f0; }
  #sagas .waits { font-weight: 600; }
  #sagas .step { display: block; color: #475569; }
"""

SCRIPT = """
document.getElementById("list-traces").addEventListener("click", async () => {
  const answer = await fetch("/traces");
  const body = await answer.json();
  const list = document.getElementById("traces");
  if (!answer.ok) { list.replaceChildren(element("li", "", body.error)); return; }
  list.replaceChildren(...body.traces.map(span => {
    const a = span.attributes || {};
    const item = element("li");
    const open = element("button", "", `${new Date(span.start * 1000).toLocaleTimeString()}` +
      ` · ${a["url.path"] || span.name}${a["url.query"] ? "?" + a["url.query"] : ""} · ` +
      `${span.duration_ms.toFixed(1)} ms` + (span.status === "error" ? " · error" : ""));
    open.type = "button";
    open.addEventListener("click", () => openTrace(span.trace_id));
    item.append(open);
    return item;
  }));
  window.__traces = body.traces;
});

// Watch: the events as they come, filtered here
const seenTypes = new Set();
function drawEvents(snapshot) {
  const events = snapshot.events || [];
  const types = document.getElementById("event-type");
  for (const e of events) {
    if (!seenTypes.has(e.type)) {
      seenTypes.add(e.type);
      const option = document.createElement("option");
      option.textContent = e.type;
      types.append(option);
    }
  }
  const type = types.value, source = document.getElementById("event-source").value;
  const list = document.getElementById("events");
  list.replaceChildren(...events.filter(e => (!type || e.type === type) &&
                                             (!source || e.source === source))
    .slice().reverse().map(e => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "type";
      name.textContent = e.type;
      item.append(`#${number(e.position)} `, name,
                  ` from ${e.source} · ${e.summary || ""}`);
      return item;
    }));
  document.getElementById("events-said").textContent = snapshot.events_problem || "";
  drawSagas(snapshot);
  const dead = snapshot.dead_letters || [];
  document.getElementById("dead-letters").textContent = snapshot.dead_letter_count
    ? `${number(snapshot.dead_letter_count)} dead letter(s), the read model could not ` +
      `apply: ${dead.map(d => `#${d.position} ${d.type ?? "?"}: ${d.reason}`).join("; ")}`
    : "no dead letters: the read model applied every event it was handed";
}
// the sagas in flight: orders counts both kinds; the oldest listed, each with its step
// (an orchestrated one's from orders' row, a choreographed one's put together from what
// products and users say they have done)
function drawSagas(snapshot) {
  const orders = snapshot.parts.find(p => p.name === "orders");
  const flying = orders && orders.in_flight;
  const steps = flying ? Object.entries(flying.saga_orchestrated)
    .map(([state, n]) => `${n} ${state}`).join(", ") : "";
  document.getElementById("in-flight").textContent = !flying ? "" :
    !flying.saga && !steps ? "none" :
    `choreographed: ${number(flying.saga)} · orchestrated: ${steps || "none"}`;
  const sagas = snapshot.sagas || [];
  document.getElementById("sagas-said").hidden = !sagas.length;
  document.getElementById("sagas").replaceChildren(...sagas.map(saga => {
    const item = element("li");
    const kind = saga.strategy === "saga" ? "choreographed" : "orchestrated";
    item.append(`order ${saga.order_id} · ${kind} · ${saga.age_seconds.toFixed(1)} s · `,
                element("span", "waits", saga.waits_for ? `waits for ${saga.waits_for}`
                                                         : "whose move: unknown"),
                element("span", "step", saga.step));
    return item;
  }));
}
// the last minutes, kept by this tab from the looks it was handed
// seeded with what the dashboard kept before this tab opened (GET /history)
const history = [];
fetch("/history").then(r => r.ok ? r.json() : {points: []}).then(body => {
  const first = history.length ? history[0].at : Infinity;  // what this tab saw itself
  for (const [at, waiting, behind] of body.points) {
    if (at < first) history.push({at, waiting, behind});
  }
  history.sort((a, b) => a.at - b.at);
  if (history.length) drawHistory(history[history.length - 1].at);
  window.__seeded = body.points.length;
});
function remember(snapshot) {
  const waiting = snapshot.parts.reduce((sum, p) => sum + (p.outbox || 0), 0);
  const query = snapshot.parts.find(p => p.name === "query");
  if (!history.length || history[history.length - 1].at < snapshot.at) {
    history.push({at: snapshot.at, waiting, behind: query ? (query.behind || 0) : 0});
  }
  drawHistory(snapshot.at);
}
function drawHistory(now) {
  while (history.length && history[0].at < now - HISTORY_SECONDS) history.shift();
  const [w, h] = [HISTORY_W, HISTORY_H];
  const top = Math.max(10, ...history.map(e => Math.max(e.waiting, e.behind)));
  const point = (e, value) =>
    `${(w * (1 - (now - e.at) / HISTORY_SECONDS)).toFixed(1)},` +
    `${(h - h * value / top).toFixed(1)}`;
  document.getElementById("line-waiting").setAttribute(
    "points", history.map(e => point(e, e.waiting)).join(" "));
  document.getElementById("line-behind").setAttribute(
    "points", history.map(e => point(e, e.behind)).join(" "));
  document.getElementById("history-top").textContent = number(top);
  window.__history = history.length;
}
"""
