"""Experiments: a scenario run on this sandbox by its supervisor, its faults on the
picture as they happen, each strategy's answered and failed requests a second filling in,
then its verdict; the runs before it, each report a click away (../experiments.py).
"""

from __future__ import annotations

TITLE = "Experiments"

HTML = """
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
"""

STYLE = """
  #run-chart { width: 100%; height: auto; }
  .said-lines { margin: 0 0 .5rem; padding-left: 1.2rem; font-family: ui-monospace,
                monospace; font-size: 14px; color: #334155; }
  .verdict-valid { color: #15803d; font-weight: 700; }
  .verdict-invalid, .verdict-failed { color: #b91c1c; font-weight: 700; }
  .verdict-unknown, .verdict-running { color: #b45309; font-weight: 700; }
  #run-chart text { font-size: 15px; fill: #334155; }
  #run-chart .ok { fill: none; stroke: #16a34a; stroke-width: 2.5; }
  #run-chart .failed { fill: none; stroke: #dc2626; stroke-width: 2.5; }
  #run-chart .lane { fill: #ffffff; stroke: #e2e8f0; }
  .ok-key { color: #15803d; } .failed-key { color: #b91c1c; }
"""

SCRIPT = """
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
"""
