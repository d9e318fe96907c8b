"""Ask: a user id and a strategy (or compare) give the answer, its trace's waterfall (the
trace page's own drawing, msshop/drawings/waterfall.py) and the files it touched lit on
the picture (GET /ask: ../ask.py). A trace listed in Watch opens here too (openTrace).
"""

from __future__ import annotations

TITLE = "Ask"

HTML = """
<form id="ask" class="controls">
<label>user <input id="user" type="number" min="1" value="1" required></label>
<label>strategy <select id="strategy"><option>replicated</option><option>direct-call</option>
<option value="compare">compare both</option></select></label>
<button type="submit">Ask</button>
<span class="hint">the files an answer touched are lit above</span>
</form>
<div id="answers"></div>
"""

STYLE = """
  .answer h3 { font-size: 1rem; margin: .4rem 0 .2rem; }
  .answer .error { color: #b91c1c; font-weight: 600; }
  .answer .titles { color: #334155; }
  .waterfall .row { grid-template-columns: 18rem 1fr 5rem; height: 1.5rem; }
  .waterfall .axis { grid-template-columns: 18rem 1fr 5rem; }
"""

SCRIPT = """
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
"""
