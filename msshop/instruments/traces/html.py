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
from msshop.drawings import waterfall
from msshop.instruments.traces.shape import start


def to_html(spans: Iterable[Span], trace_id: str, title: str = "") -> str:
    spans = sorted(spans, key=start)
    data = json.dumps({"trace_id": trace_id, "title": title, "spans": spans,
                       "colours": waterfall.COLOURS})
    # inside <script>, "</" would end it early, and U+2028/9 end a JavaScript line
    data = (data.replace("</", "<\\/").replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029"))
    return (PAGE.replace("/*STYLE*/", waterfall.STYLE)
            .replace("/*WATERFALL*/", waterfall.SCRIPT)
            .replace("/*TRACE*/null", data)
            .replace("<title>msshop trace</title>", f"<title>msshop trace {trace_id}</title>"))


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
/*STYLE*/
</style>
</head>
<body>
<h1 id="title"></h1>
<div class="meta" id="meta"></div>
<div id="waterfall"></div>
<script>
"use strict";
/*WATERFALL*/
const TRACE = /*TRACE*/null;
const drawn = drawWaterfall(document.getElementById("waterfall"), TRACE);
document.getElementById("title").textContent = `trace ${TRACE.trace_id}`;
document.getElementById("meta").textContent =
  `${TRACE.title ? TRACE.title + " · " : ""}${TRACE.spans.length} spans · ` +
  `${drawn.total.toFixed(2)} ms · services: ${drawn.services.join(", ")}`;
</script>
</body>
</html>
"""
