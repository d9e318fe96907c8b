"""`challenge run --report DIR`: index.html (the verdict, each finding, the figures; no
script, opens offline) and report.json. `run all --report DIR`: each rung's in DIR/NAME/,
and DIR/index.html the ladder, linking them. The report folder is made and taken back as
the experiments' is (experiments/page.py)."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from msshop.instruments.experiments.page import make_room, taken_back_on_failure, write_files
from msshop.instruments.traces.html import to_html

if TYPE_CHECKING:
    from msshop.instruments.challenges.run import ChallengeReport, LadderReport

__all__ = ["make_room", "page", "taken_back_on_failure", "write_ladder", "write_report"]

COLOURS = {"passed": "#15803d", "failed": "#b91c1c", "unknown": "#a16207"}


def write_report(report: ChallengeReport, directory: Path) -> list[Path]:
    """index.html and report.json in `directory`; the paths written, the page first."""
    files = {directory / "index.html": page(report),
             directory / "report.json": json.dumps(report, indent=2) + "\n"}
    for trace_id, spans in report["traces"].items():  # each finding's answer, drawn
        files[directory / f"trace-{trace_id}.html"] = to_html(
            spans, trace_id, f"{report['challenge']}: a failing answer")
    return write_files(directory, files)


def write_ladder(report: LadderReport, directory: Path) -> list[Path]:
    """DIR/index.html (the ladder) and DIR/report.json, then each rung's in DIR/NAME/."""
    written = write_files(directory, {
        directory / "index.html": ladder_page(report),
        directory / "report.json": json.dumps(report, indent=2) + "\n"})
    for rung in report["challenges"]:
        written += write_report(rung, directory / rung["challenge"])
    return written


def ladder_page(report: LadderReport) -> str:
    rows = "".join(
        f"<tr><td>{r['rung']}</td><td><a href=\"{escape(r['challenge'])}/index.html\">"
        f"{escape(r['challenge'])}</a></td><td><span class=badge style=\"background:"
        f"{COLOURS[r['verdict']]}\">{r['verdict']}</span></td><td>{r['took_s']} s</td>"
        f"<td>{escape(next(iter([f['line'] for f in r['findings']] + r['unknown']), ''))}"
        "</td></tr>" for r in report["challenges"])
    return LADDER_PAGE.format(
        colour=COLOURS[report["verdict"]], verdict=report["verdict"],
        service=escape(report["service"]), bus=escape(report["bus"]),
        took=report["took_s"], passed=len(report["passed"]),
        rungs=len(report["challenges"]), rows=rows)


def page(report: ChallengeReport) -> str:
    findings = "".join(
        f"<li>{escape(f['line'])}"
        + (f"<br><span class=evidence>{escape(f['evidence'])}</span>" if f["evidence"]
           else "")
        + (f"<br><a class=evidence href=\"trace-{escape(f['trace_id'])}.html\">its trace, "
           f"{escape(f['trace_id'])}</a>" if f["trace_id"] in report["traces"] else "")
        + "</li>" for f in report["findings"])
    if report["more_findings"]:
        findings += f"<li>and {report['more_findings']} more</li>"
    unknown = "".join(f"<li>{escape(line)}</li>" for line in report["unknown"])
    checked = "".join(f"<li>{escape(line)}</li>" for line in report["checked"])
    figures = escape(json.dumps(report["figures"], indent=2)) if report["figures"] else ""
    return PAGE.format(
        title=escape(report["challenge"]), rung=report["rung"], asks=escape(report["asks"]),
        colour=COLOURS[report["verdict"]], verdict=report["verdict"],
        service=escape(report["service"]), bus=escape(report["bus"]),
        started=escape(report["started_at"]), machine=escape(report["machine"]),
        took=report["took_s"], checked=checked,
        findings=f"<h2>Findings</h2><ul>{findings}</ul>" if findings else "",
        unknown=f"<h2>Could not tell</h2><ul>{unknown}</ul>" if unknown else "",
        figures=f"<h2>Figures</h2><pre>{figures}</pre>" if figures else "")


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · msshop challenge</title>
<style>
  body {{ font: 15px/1.5 system-ui, sans-serif; color: #111827; margin: 0;
         background: #f9fafb; }}
  main {{ max-width: 960px; margin: 0 auto; padding: 2rem 1.5rem 3rem; }}
  .kicker, .meta, footer {{ color: #6b7280; font-size: .9rem; }}
  .verdict {{ border-left: 6px solid {colour}; background: #fff; padding: .8rem 1.1rem;
             border-radius: 6px; }}
  .badge {{ background: {colour}; color: #fff; font-weight: 700; padding: .1rem .6rem;
           border-radius: 999px; }}
  .evidence {{ color: #4b5563; font-size: .9rem; }}
  pre {{ background: #fff; padding: .8rem; border-radius: 6px; }}
</style>
</head>
<body>
<main>
<p class=kicker>msshop challenge · rung {rung}</p>
<h1>{title}</h1>
<p>{asks}</p>
<p class=meta>{service} · {bus} bus · {started} · {machine} · {took} s</p>
<div class=verdict><span class=badge>{verdict}</span><ul>{checked}</ul></div>
{findings}
{unknown}
{figures}
<footer>Made by <code>msshop challenge run</code>. Everything on this page is in
report.json beside it.</footer>
</main>
</body>
</html>
"""


LADDER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>The ladder · msshop challenge</title>
<style>
  body {{ font: 15px/1.5 system-ui, sans-serif; color: #111827; margin: 0;
         background: #f9fafb; }}
  main {{ max-width: 960px; margin: 0 auto; padding: 2rem 1.5rem 3rem; }}
  .kicker, .meta, footer {{ color: #6b7280; font-size: .9rem; }}
  .verdict {{ border-left: 6px solid {colour}; background: #fff; padding: .8rem 1.1rem;
             border-radius: 6px; }}
  .badge {{ background: {colour}; color: #fff; font-weight: 700; padding: .1rem .6rem;
           border-radius: 999px; }}
  table {{ border-collapse: collapse; background: #fff; width: 100%; margin-top: 1rem; }}
  td {{ padding: .4rem .6rem; border-top: 1px solid #e5e7eb; vertical-align: top; }}
</style>
</head>
<body>
<main>
<p class=kicker>msshop challenge · the whole ladder</p>
<h1>The ladder</h1>
<p class=meta>{service} · {bus} bus · {took} s</p>
<div class=verdict><span class=badge>{verdict}</span> {passed} of {rungs} passed</div>
<table>{rows}</table>
<footer>Made by <code>msshop challenge run all</code>. Each rung's page is in its own
folder; everything on this page is in report.json beside it.</footer>
</main>
</body>
</html>
"""
