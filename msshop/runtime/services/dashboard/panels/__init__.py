"""The panels under the picture (issue 28), one shown at a time, chosen by tabs (the arrow
keys move between them): each tab a module of its own, declared once in PANELS (its id, its
title, its markup, style and script); the tab bar and the sections are made from it.

    ask.py          the answer, its waterfall, the files it touched
    break_it.py     the buttons, as the CLI
    watch.py        the events, the dead letters, the sagas in flight, the last questions,
                    the last two minutes
    experiments.py  a scenario run here, live, to its verdict
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from msshop.runtime.services.dashboard.panels import ask, break_it, experiments, watch


@dataclass(frozen=True)
class Panel:
    id: str  # tab-<id>, panel-<id>
    title: str
    html: Callable[[], str]
    style: str
    script: str


PANELS = (
    Panel("ask", ask.TITLE, lambda: ask.HTML, ask.STYLE, ask.SCRIPT),
    Panel("break", break_it.TITLE, break_it.html, break_it.STYLE, break_it.SCRIPT),
    Panel("watch", watch.TITLE, watch.html, watch.STYLE, watch.SCRIPT),
    Panel("experiments", experiments.TITLE, lambda: experiments.HTML, experiments.STYLE,
          experiments.SCRIPT),
)


def html() -> str:
    """The tab bar (the first tab chosen), then each panel's section."""
    tabs, sections = [], []
    for i, p in enumerate(PANELS):
        chosen = i == 0
        tabs.append(f'<button type="button" role="tab" id="tab-{p.id}" '
                    f'aria-controls="panel-{p.id}" aria-selected="{str(chosen).lower()}"'
                    f'{"" if chosen else TAB_AWAY}>{p.title}</button>')
        sections.append(f'<section class="panel" role="tabpanel" id="panel-{p.id}" '
                        f'aria-labelledby="tab-{p.id}"{"" if chosen else " hidden"}>\n'
                        f'{p.html()}\n</section>')
    return ('<nav class="tabs" role="tablist" aria-label="what to do">\n'
            + "\n".join(tabs) + '\n<span class="said" id="done" aria-live="polite"></span>'
            "\n</nav>\n" + "\n".join(sections))


TAB_AWAY = ' tabindex="-1"'  # a tab not chosen: the arrow keys reach it, not Tab


def style() -> str:
    return STYLE + "".join(p.style for p in PANELS)


def script() -> str:
    return SCRIPT + "".join(p.script for p in PANELS)


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
  .runs { margin: 0; padding-left: 1.2rem; }
"""

# what every panel uses: element(), the tabs (choose), say() in the tab bar, post()
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
async function post(path, body) {
  say("…");
  const answer = await fetch(path, {
    method: "POST", headers: {"x-csrf-token": csrf, "content-type": "application/json"},
    body: JSON.stringify(body)});
  const said = await answer.json();
  say(answer.ok ? said.done : said.error);
}
"""
