"""The panels under the picture (issue 28), one shown at a time, chosen by tabs (arrow keys
move between them):

- Ask: a user id and a strategy (or compare) -> the answer, its trace's waterfall (the
  trace page's own drawing, msshop/drawings/waterfall.py) and the files it touched lit on
  the picture;
- Break it: kill, stop, start, restart, slow, failing, heal a part; partition or mend a
  link; make a service trespass into another's file — each done as the CLI does it
  (actions.py), its effect seen on the picture and in `msshop status`;
- Watch: the bus's events as they arrive (filtered by type and source), the read model's
  dead letters, and the last minutes of the outbox backlogs and the read model's lag;
- Experiments: a scenario run on this sandbox by the supervisor, its faults on the picture
  as they happen, each strategy's answered and failed requests a second filling in, then
  its verdict; the runs before it, each report a click away.
"""

from __future__ import annotations

from msshop.contracts.topology import NAMES

# the last minutes of replication, drawn in the Watch panel (its own small SVG)
HISTORY_W, HISTORY_H = 520, 200
HISTORY_SECONDS = 120
TABS = ("ask", "break", "watch", "experiments")
LINKS = ("query users", "query products", "query orders", "orders products", "orders users")


def panels() -> str:
    options = "".join(f"<option{' selected' if n == 'products' else ''}>{n}</option>"
                      for n in NAMES)
    links = "".join(f'<option value="{link}">{link.replace(" ", " → ")}</option>'
                    for link in LINKS)
    services = "".join(f"<option>{n}</option>" for n in ("users", "products", "orders",
                                                         "query"))
    return (PANELS.replace("{options}", options).replace("{links}", links)
            .replace("{services}", services)
            .replace("{history}", _history()))


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


PANELS = """
<nav class="tabs" role="tablist" aria-label="what to do">
<button type="button" role="tab" id="tab-ask" aria-controls="panel-ask"
        aria-selected="true">Ask</button>
<button type="button" role="tab" id="tab-break" aria-controls="panel-break"
        aria-selected="false" tabindex="-1">Break it</button>
<button type="button" role="tab" id="tab-watch" aria-controls="panel-watch"
        aria-selected="false" tabindex="-1">Watch</button>
<button type="button" role="tab" id="tab-experiments" aria-controls="panel-experiments"
        aria-selected="false" tabindex="-1">Experiments</button>
<span class="said" id="done" aria-live="polite"></span>
</nav>
<section class="panel" role="tabpanel" id="panel-ask" aria-labelledby="tab-ask">
<form id="ask" class="controls">
<label>user <input id="user" type="number" min="1" value="1" required></label>
<label>strategy <select id="strategy"><option>replicated</option><option>direct-call</option>
<option value="compare">compare both</option></select></label>
<button type="submit">Ask</button>
<span class="hint">the files an answer touched are lit above</span>
</form>
<div id="answers"></div>
</section>
<section class="panel" role="tabpanel" id="panel-break" aria-labelledby="tab-break" hidden>
<div class="controls">
<label>part <select id="target">{options}</select></label>
<button type="button" data-action="kill">kill</button>
<button type="button" data-action="stop">stop</button>
<button type="button" data-action="start">start</button>
<button type="button" data-action="restart">restart</button>
<button type="button" data-action="slow">slow (+300 ms)</button>
<button type="button" data-action="failing">failing (50%)</button>
<button type="button" data-action="heal">heal</button>
</div>
<div class="controls">
<label>link <select id="link">{links}</select></label>
<button type="button" data-link="partition">partition</button>
<button type="button" data-link="mend">mend</button>
</div>
<div class="controls">
<label>make <select id="trespasser">{services}</select></label>
<label>open the file of <select id="into"><option>users</option>
<option selected>products</option><option>orders</option><option>query</option></select>
</label>
<button type="button" data-trespass="trespass">trespass</button>
<button type="button" id="poison">poison the bus</button>
</div>
<p class="hint">Every button does what the CLI does (msshop kill, stop, start, restart,
chaos, trespass, poison): its effect shows above, in the answers, in Watch, and in msshop
status.</p>
</section>
<section class="panel" role="tabpanel" id="panel-watch" aria-labelledby="tab-watch" hidden>
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
<p id="in-flight" class="hint"></p>
<div class="controls"><button type="button" id="list-traces">the last questions
answered</button><span class="hint">(the traces the services keep; one opens in Ask)</span>
</div>
<ol id="traces" class="runs"></ol>
</div>
<div><h2>the last 2 minutes</h2>{history}</div>
</div>
</section>
<section class="panel" role="tabpanel" id="panel-experiments"
         aria-labelledby="tab-experiments" hidden>
<div class="watch">
<div>
<div class="controls">
<label>scenario <select id="scenario"></select></label>
<label>seconds <input id="seconds" type="number" min="3" max="600"
       placeholder="its own"></label>
<button type="button" id="run-experiment">Run it here</button>
</div>
<h2 id="run-title">no experiment run from here yet</h2>
<ol id="run-said" class="said-lines"></ol>
<h2>runs from here</h2>
<ul id="runs" class="runs"></ul>
</div>
<div><h2>answered and failed a second, by strategy</h2>
<svg id="run-chart" viewBox="0 0 520 40" role="img"
     aria-label="each strategy's answered and failed requests each second of the run">
</svg>
<p class="hint"><span class="ok-key">— answered</span> ·
<span class="failed-key">— failed</span></p></div>
</div>
</section>
"""

STYLE = """
  .tabs { display: flex; gap: .25rem; align-items: end; border-bottom: 2px solid #cbd5e1;
          padding: 0 1rem; }
  .tabs [role=tab] { font: inherit; font-weight: 600; padding: .35rem 1rem; border: 0;
                     border-radius: 8px 8px 0 0; background: #e2e8f0; cursor: pointer; }
  .tabs [role=tab][aria-selected=true] { background: #0f172a; color: #f8fafc; }
  .tabs .said { margin-left: auto; padding-bottom: .3rem; color: #334155; }
  .panel { overflow: auto; padding: .5rem 1rem; min-height: 0; }
  .controls { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem;
              margin-bottom: .5rem; }
  .controls select, .controls button, .controls input { font: inherit;
      padding: .2rem .6rem; border-radius: 6px; border: 1px solid #94a3b8; background: #fff; }
  .controls input { width: 7rem; }
  .controls button { cursor: pointer; }
  button:focus-visible, select:focus-visible, input:focus-visible,
  [role=tab]:focus-visible { outline: 3px solid #f59e0b; outline-offset: 1px; }
  .hint { color: #475569; }
  .answer h3 { font-size: 1rem; margin: .4rem 0 .2rem; }
  .answer .error { color: #b91c1c; font-weight: 600; }
  .answer .titles { color: #334155; }
  .waterfall .row { grid-template-columns: 18rem 1fr 5rem; height: 1.5rem; }
  .waterfall .axis { grid-template-columns: 18rem 1fr 5rem; }
  .watch { display: grid; grid-template-columns: minmax(0, 1fr) 26rem; gap: 1.5rem; }
  .watch h2 { font-size: 1rem; margin: 0 0 .3rem; }
  #events { list-style: none; margin: 0; padding: 0; font-variant-numeric: tabular-nums; }
  #events li { padding: .1rem 0; border-bottom: 1px solid #e2e8f0; white-space: nowrap;
               overflow: hidden; text-overflow: ellipsis; }
  #events .type { font-weight: 600; }
  #history, #run-chart { width: 100%; height: auto; }
  .said-lines { margin: 0 0 .5rem; padding-left: 1.2rem; font-family: ui-monospace,
                monospace; font-size: 14px; color: #334155; }
  .runs { margin: 0; padding-left: 1.2rem; }
  .verdict-valid { color: #15803d; font-weight: 700; }
  .verdict-invalid, .verdict-failed { color: #b91c1c; font-weight: 700; }
  .verdict-unknown, .verdict-running { color: #b45309; font-weight: 700; }
  #run-chart text { font-size: 15px; fill: #334155; }
  #run-chart .ok { fill: none; stroke: #16a34a; stroke-width: 2.5; }
  #run-chart .failed { fill: none; stroke: #dc2626; stroke-width: 2.5; }
  #run-chart .lane { fill: #ffffff; stroke: #e2e8f0; }
  .ok-key { color: #15803d; } .failed-key { color: #b91c1c; }
  #history .frame { fill: #ffffff; stroke: #cbd5e1; stroke-width: 2; }
  #history .axis { font-size: 15px; fill: #64748b; }
  #history polyline { fill: none; stroke-width: 3; }
  #history .key { font-size: 16px; }
  #history polyline.waiting { stroke: #7c3aed; }
  #history polyline.behind { stroke: #0891b2; }
  #history text.waiting { fill: #6d28d9; }
  #history text.behind { fill: #0e7490; }
"""

SCRIPT = """
const element = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
};
// tabs: a click, or the arrow keys on the tab list
const tabs = [...document.querySelectorAll("[role=tab]")];
function choose(tab) {
  for (const other of tabs) {
    const chosen = other === tab;
    other.setAttribute("aria-selected", String(chosen));
    other.tabIndex = chosen ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !chosen;
  }
  tab.focus();
}
tabs.forEach((tab, i) => {
  tab.addEventListener("click", () => choose(tab));
  tab.addEventListener("keydown", event => {
    const step = {ArrowRight: 1, ArrowLeft: -1}[event.key];
    if (step) choose(tabs[(i + step + tabs.length) % tabs.length]);
  });
});
const say = text => { document.getElementById("done").textContent = text; };
// a part of the picture, clicked or Enter on it: the part to break, in Break it
for (const part of document.querySelectorAll("#shop .part")) {
  const pick = () => {
    document.getElementById("target").value = part.dataset.part;
    choose(document.getElementById("tab-break"));
  };
  part.addEventListener("click", pick);
  part.addEventListener("keydown", event => { if (event.key === "Enter") pick(); });
}
async function post(path, body) {
  say("…");
  const answer = await fetch(path, {
    method: "POST", headers: {"x-csrf-token": csrf, "content-type": "application/json"},
    body: JSON.stringify(body)});
  const said = await answer.json();
  say(answer.ok ? said.done : said.error);
}
for (const button of document.querySelectorAll("[data-action]")) {
  button.addEventListener("click", () => post("/action", {
    part: document.getElementById("target").value, action: button.dataset.action}));
}
for (const button of document.querySelectorAll("[data-link]")) {
  button.addEventListener("click", () => {
    const [part, to] = document.getElementById("link").value.split(" ");
    post("/action", {part, to, action: button.dataset.link});
  });
}
document.getElementById("poison").addEventListener("click", () => post("/action", {
  part: "bus", action: "poison"}));
document.querySelector("[data-trespass]").addEventListener("click", () => post("/action", {
  part: document.getElementById("trespasser").value, action: "trespass",
  to: document.getElementById("into").value}));

// Ask
function shown(answer) {
  const box = document.createElement("div");
  box.className = "answer";
  const head = document.createElement("h3");
  const found = answer.answer;
  head.textContent = found
    ? `${answer.strategy}: ${found.orders.length} order(s) of ${found.user.name ?? "user " +
       found.user.id} in ${answer.latency_ms.toFixed(1)} ms · touched ` +
      (answer.touched.join(", ") || "no file")
    : `${answer.strategy}: `;
  box.append(head);
  if (!found) {
    const error = document.createElement("span");
    error.className = "error";
    error.textContent = answer.error;
    head.append(error);
  } else {
    const titles = document.createElement("p");
    titles.className = "titles";
    const freshness = found.freshness.live ? "read just now from the owners"
      : `read model at ${found.freshness.position}, ${found.freshness.behind} behind`;
    titles.textContent = found.orders.slice(0, 8).map(o => `${o.title ?? "?"} x${o.quantity}`)
      .join(", ") + (found.orders.length > 8 ? ", …" : "") + ` · ${freshness}`;
    box.append(titles);
  }
  const drawing = document.createElement("div");
  box.append(drawing);
  drawWaterfall(drawing, {trace_id: answer.trace_id, title: answer.strategy,
                          spans: answer.spans, colours: COLOURS});
  return box;
}
document.getElementById("ask").addEventListener("submit", async event => {
  event.preventDefault();
  const user = document.getElementById("user").value;
  const strategy = document.getElementById("strategy").value;
  const place = document.getElementById("answers");
  place.textContent = "asking…";
  const answer = await fetch(`/ask?user=${encodeURIComponent(user)}` +
                             `&strategy=${encodeURIComponent(strategy)}`);
  const body = await answer.json();
  if (!answer.ok) { place.textContent = body.error; return; }
  place.replaceChildren(...body.answers.map(shown));
  light(body.answers.flatMap(a => a.touched), body.answers.map(a => a.strategy));
  window.__asked = body;
});

// the traces the query service keeps: one, gathered from every part, opens in Ask
async function openTrace(traceId) {
  const answer = await fetch(`/trace?id=${encodeURIComponent(traceId)}`);
  const body = await answer.json();
  choose(document.getElementById("tab-ask"));
  const place = document.getElementById("answers");
  if (!answer.ok) { place.textContent = body.error; return; }
  const drawing = element("div");
  place.replaceChildren(element("h3", "", `trace ${traceId}`), drawing);
  drawWaterfall(drawing, {trace_id: traceId, title: "", spans: body.spans, colours: COLOURS});
  window.__trace = body;
}
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
  const orders = snapshot.parts.find(p => p.name === "orders");
  const flying = orders && orders.in_flight;
  const steps = flying ? Object.entries(flying.saga_orchestrated)
    .map(([state, n]) => `${n} ${state}`).join(", ") : "";
  document.getElementById("in-flight").textContent = !flying ? "" :
    `sagas in flight: choreographed ${number(flying.saga)} (pending: where each is, no ` +
    `one service knows; msshop sagas puts it together from the three files) · ` +
    `orchestrated ${steps || "none"} (orders' orchestrator keeps each one's step)`;
  const dead = snapshot.dead_letters || [];
  document.getElementById("dead-letters").textContent = snapshot.dead_letter_count
    ? `${number(snapshot.dead_letter_count)} dead letter(s), the read model could not ` +
      `apply: ${dead.map(d => `#${d.position} ${d.type ?? "?"}: ${d.reason}`).join("; ")}`
    : "no dead letters: the read model applied every event it was handed";
}
// Experiments: the scenarios and the runs asked for from here; the newest, as it goes
async function listRuns() {
  const answer = await fetch("/experiments");
  if (!answer.ok) return;
  const body = await answer.json();
  const chosen = document.getElementById("scenario");
  if (!chosen.options.length) {
    for (const s of body.catalogue) {
      const option = element("option", "", `${s.name} (${s.workload}, ${s.seconds} s)`);
      option.value = s.name;
      option.title = s.title;
      chosen.append(option);
    }
  }
  document.getElementById("runs").replaceChildren(...body.runs.map(run => {
    const item = element("li", "", `${run.id} `);
    const verdict = run.verdict || run.state;
    item.append(element("span", `verdict-${verdict}`, verdict));
    if (run.report) {
      const link = element("a", "", "report");
      link.href = `/report?id=${encodeURIComponent(run.id)}`;
      link.target = "_blank";
      link.rel = "noopener";
      item.append(" · ", link);
    }
    if (run.error) item.append(` · ${run.error}`);
    return item;
  }));
  window.__runs = body.runs;
}
document.getElementById("tab-experiments").addEventListener("click", listRuns);
document.getElementById("run-experiment").addEventListener("click", async () => {
  const seconds = document.getElementById("seconds").value;
  await post("/experiment", {scenario: document.getElementById("scenario").value,
                             seconds: seconds === "" ? null : Number(seconds)});
  listRuns();
});
let runShown = null;
function drawRun(snapshot) {
  const run = snapshot.experiment;
  if (!run) return;
  const verdict = run.verdict || run.state;
  const title = document.getElementById("run-title");
  title.replaceChildren(`${run.id}: `, element("span", `verdict-${verdict}`, verdict));
  for (const [strategy, said] of Object.entries(run.verdicts || {})) {
    title.append(` · ${strategy} `, element("span", `verdict-${said}`, said));
  }
  if (run.error) title.append(` · ${run.error}`);
  document.getElementById("run-said").replaceChildren(
    ...run.said.map(line => element("li", "", line.trim())));
  const chart = document.getElementById("run-chart");  // made with its own namespace
  const lane = 60, left = 150, width = 360;
  const top = Math.max(1, ...run.seconds.flatMap(s => Object.values(s).flat()));
  const steps = Math.max(1, run.seconds.length - 1);
  chart.setAttribute("viewBox", `0 0 520 ${Math.max(1, run.strategies.length) * lane}`);
  chart.replaceChildren(...run.strategies.flatMap((strategy, row) => {
    const y = row * lane;
    const label = chart.ownerDocument.createElementNS(chart.namespaceURI, "text");
    label.setAttribute("x", "0");
    label.setAttribute("y", String(y + 34));
    label.textContent = strategy;
    const frame = chart.ownerDocument.createElementNS(chart.namespaceURI, "rect");
    for (const [k, v] of [["x", left], ["y", y + 6], ["width", width], ["height", lane - 12]]) {
      frame.setAttribute(k, String(v));
    }
    frame.setAttribute("class", "lane");
    const line = index => {
      const drawn = chart.ownerDocument.createElementNS(chart.namespaceURI, "polyline");
      drawn.setAttribute("class", index ? "failed" : "ok");
      drawn.setAttribute("points", run.seconds.map((second, t) => {
        const value = (second[strategy] || [0, 0])[index];
        return `${(left + width * t / steps).toFixed(1)},` +
               `${(y + lane - 8 - (lane - 16) * value / top).toFixed(1)}`;
      }).join(" "));
      return drawn;
    };
    return [frame, label, line(0), line(1)];
  }));
  if (runShown !== null && runShown !== verdict && run.state !== "running") listRuns();
  runShown = verdict;
  window.__run = run;
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
