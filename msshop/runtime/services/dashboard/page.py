"""The dashboard's page (issue 28): the picture of the shop (picture.py) over the panels
(panels/: Ask, Break it, Watch, Experiments), updated live from the dashboard's stream (GET /live,
server-sent events). One HTML document: its style and script inline, allowed by the page's
nonce alone (Content-Security-Policy); nothing fetched from anywhere else; readable on a
projector at 1280x720 with no scroll (a panel scrolls inside itself); usable with the
keyboard (every part, tab, button and waterfall bar takes the focus).
"""

from __future__ import annotations

import json
from html import escape

from msshop.drawings import waterfall
from msshop.runtime.services.dashboard import panels, picture
from msshop.runtime.services.dashboard.panels import watch


def page(csrf: str, nonce: str, sandbox: str) -> str:
    constants = {"HISTORY_SECONDS": watch.HISTORY_SECONDS, "HISTORY_W": watch.HISTORY_W,
                 "HISTORY_H": watch.HISTORY_H, "COLOURS": waterfall.COLOURS}
    script = "".join(f"const {name} = {json.dumps(value)};\n"
                     for name, value in constants.items())
    return (PAGE.replace("{csrf}", escape(csrf)).replace("{nonce}", escape(nonce))
            .replace("{sandbox}", escape(sandbox))
            # the panels' style last: Ask's narrower waterfall over the drawing's own
            .replace("/*STYLE*/", picture.STYLE + waterfall.STYLE + panels.style())
            .replace("{picture}", picture.svg()).replace("{panels}", panels.html())
            .replace("/*SCRIPT*/", script + waterfall.SCRIPT + picture.SCRIPT
                     + panels.script() + SCRIPT))


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{csrf}">
<title>msshop · {sandbox}</title>
<style nonce="{nonce}">
  html, body { height: 100%; }
  body { font: 16px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
         background: #f8fafc; color: #0f172a; display: grid; overflow: hidden;
         grid-template-rows: auto minmax(0, 48vh) auto minmax(0, 1fr); }
  header { display: flex; align-items: center; gap: 1rem; padding: .5rem 1.2rem;
           background: #0f172a; color: #f8fafc; }
  header h1 { font-size: 1.1rem; margin: 0; font-weight: 600; }
  header .when { margin-left: auto; font-variant-numeric: tabular-nums; color: #cbd5e1; }
  header button { font: inherit; background: #334155; color: #f8fafc; border: 0;
                  padding: .3rem .8rem; border-radius: 6px; cursor: pointer; }
  header button[aria-pressed=true] { background: #f59e0b; color: #0f172a; }
  header button:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
  .picture { padding: .4rem 1rem 0; min-height: 0; }
  #status { margin: 0; color: #b91c1c; }
/*STYLE*/
</style>
</head>
<body>
<header><h1>msshop · {sandbox}</h1>
<button id="monolith-toggle" type="button" aria-pressed="false">monolith picture</button>
<span class="when" id="when" aria-live="polite">connecting…</span>
<button id="logout" type="button">Log out</button></header>
<div class="picture">{picture}</div>
{panels}
<script nonce="{nonce}">
"use strict";
const csrf = document.querySelector('meta[name="csrf"]').content;
/*SCRIPT*/
</script>
</body>
</html>
"""

SCRIPT = """
function draw(snapshot) {
  drawPicture(snapshot);
  drawEvents(snapshot);
  drawRun(snapshot);
  remember(snapshot);
  document.getElementById("when").textContent =
    "as of " + new Date(snapshot.at * 1000).toLocaleTimeString();
  window.__snapshot = snapshot;
}
const live = new EventSource("/live");
live.onmessage = message => draw(JSON.parse(message.data));
live.onerror = () => say("the dashboard does not answer: is the sandbox up? (msshop status)");
live.onopen = () => say("");
document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/logout", {method: "POST", headers: {"x-csrf-token": csrf}});
  location.reload();
});
"""
