"""`msshop experiment … --report DIR` of a purchases scenario (issue 27): one offline page,
page.py's look and machinery (plotly.js inside, every word from a scenario escaped), with
each write strategy's charts: purchases confirmed and not each second, the orders pending
(the invariant's slack), and the time to each purchase's outcome; the verdicts side by side.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape
from typing import TYPE_CHECKING, Any

from msshop.instruments.experiments.page import (
    PAGE,
    VERDICT_COLOURS,
    _chart_section,
    _duration,
    _faults_list,
    _log_ms_axis,
    _ms,
    _over_time,
    _steps,
)

if TYPE_CHECKING:
    from msshop.instruments.experiments.report import WriteSecond, WritesReport

# the terminal's colours (render/write_experiments.py), as CSS
COLOURS = {"monolith": "#6b7280", "direct-call": "#f97316", "saga": "#2563eb",
           "saga-orchestrated": "#9333ea"}
Value = Callable[["WriteSecond"], "float | None"]
WRITES_PAGE = (PAGE.replace("<h2>During the faults and outside them</h2>",
                            "<h2>Purchases by write strategy</h2>")
               .replace("<h2>Writes, events and staleness</h2>",
                        "<h2>Pending, and the time to an outcome</h2>"))


def writes_page(report: WritesReport) -> str:
    charts = [
        ("confirmed", _per_second(report, "confirmed", "purchases confirmed each second"),
         "Each second, the purchases sent in it that ended confirmed, by write strategy. "
         "Shaded: the faults, while they held."),
        ("not-confirmed", _per_second(report, "other", "purchases not confirmed each second"),
         "Each second, the purchases sent in it that were rejected, failed (no answer, or an "
         "error: the client cannot tell) or never ended."),
        ("pending", _pending(report), "Orders pending, sampled twice a second: a saga's "
         "semantic lock. The stock they hold is the invariant's slack."),
        ("outcome", _outcome(report), "Each second, how long the purchases sent in it took "
         "to their outcome: the median (dotted) and the longest (solid), on a log scale. A "
         "saga's outcome comes after its steps, or after an outage."),
    ]
    sections = [_chart_section(name, figure, caption, include_plotlyjs=number == 0)
                for number, (name, figure, caption) in enumerate(charts)]
    parts = {"title": escape(report["title"]), "heading": _heading(report),
             "verdict": _verdicts(report), "timecharts": "\n".join(sections[:2]),
             "figures": _figures(report), "morecharts": "\n".join(sections[2:]),
             "faults": _faults_list(report["faults"])}
    return re.sub(r"\{(\w+)\}", lambda name: parts[name[1]], WRITES_PAGE)


def _heading(report: WritesReport) -> str:
    shows = " ".join(report["shows"].split())
    return (f'<p class="kicker">msshop experiment · {escape(report["scenario"])}</p>\n'
            f"<h1>{escape(report['title'])}</h1>\n"
            f'<p class="shows">{escape(shows)}</p>\n'
            f'<p class="meta">{report["purchase_rate"]:g} purchases/s by each write strategy '
            f"for {_duration(report['seconds'])} on the {escape(report['bus'])} bus · "
            f"{escape(report['machine'])} · {escape(report['started_at'])}</p>")


def _verdicts(report: WritesReport) -> str:
    items = []
    for name in report["strategies"]:
        outcome = report["outcomes"][name]
        colour = VERDICT_COLOURS[outcome["verdict"]]
        checked = outcome["checked"]
        said = (f"{checked['stored_once']:,} of {checked['confirmed']:,} confirmed purchases "
                "stored once, each holding its stock and credit once; nothing leaked or left "
                "pending" if outcome["verdict"] == "valid" else
                "</li><li>".join(escape(p) for p in outcome["problems"]) or "no reason given")
        body = f"<p>{said}</p>" if outcome["verdict"] == "valid" else f"<ul><li>{said}</li></ul>"
        items.append(f'<div class="verdict" style="--colour: {colour}; margin: .6rem 0">'
                     f'<p><span class="badge">{outcome["verdict"]}</span>'
                     f"<strong>{escape(name)}</strong> "
                     f'<span class="checked">({escape(checked["scope"])})</span></p>'
                     f"{body}</div>")
    return "\n".join(items)


def _figures(report: WritesReport) -> str:
    rows = []
    for name in report["strategies"]:
        f = report["figures"][name]
        lasted = f["pending_for_ms"]
        rows.append(
            f"<tr><th>{escape(name)}</th><td>{f['sent']:,}</td><td>{f['confirmed']:,}</td>"
            f"<td>{f['rejected']:,}</td><td>{f['failed']:,}</td><td>{f['pending']:,}</td>"
            f"<td>{_ms(f['outcome_ms']['p50'])}</td><td>{_ms(f['outcome_ms']['p99'])}</td>"
            f"<td>{f['answered_pending']:,}</td><td>{_ms(lasted['max'])}</td></tr>")
    head = ("<tr><th>strategy</th><th>sent</th><th>confirmed</th><th>rejected</th>"
            "<th>failed</th><th>never ended</th><th>outcome p50 ms</th><th>p99 ms</th>"
            "<th>answered pending</th><th>pending at most, ms</th></tr>")
    return (f'<table class="figures"><thead>{head}</thead><tbody>{"".join(rows)}</tbody>'
            "</table>")


def _per_second(report: WritesReport, which: str, title: str) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for name in report["strategies"]:
        def value(second: WriteSecond, name: str = name) -> float:
            ended = second["strategies"][name]["ended"]
            return float(ended["confirmed"] if which == "confirmed" else
                         ended["rejected"] + ended["failed"] + ended["pending"])

        xs, ys = _steps(report["timeline"], value)
        figure.add_trace(go.Scatter(x=xs, y=ys, name=name, mode="lines", line_shape="hv",
                                    line={"color": COLOURS.get(name, "#111827"), "width": 2.5},
                                    hovertemplate="%{y:.0f}<extra>" + name + "</extra>"))
    _over_time(figure, report, title)
    figure.update_yaxes(title_text="purchases", rangemode="tozero")
    return figure


def _pending(report: WritesReport) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for name in report["strategies"]:
        for field, dash, label in (("pending_orders", "solid", "orders pending"),
                                   ("stock_held", "dot", "stock they hold")):
            xs, ys = _steps(report["timeline"], _of(name, field))
            figure.add_trace(go.Scatter(
                x=xs, y=ys, name=f"{name}: {label}", mode="lines", line_shape="hv",
                line={"color": COLOURS.get(name, "#111827"), "dash": dash, "width": 2}))
    _over_time(figure, report, "orders pending, and the stock they hold")
    figure.update_yaxes(title_text="orders / items", rangemode="tozero")
    return figure


def _outcome(report: WritesReport) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for name in report["strategies"]:
        for field, dash in (("outcome_max_ms", "solid"), ("outcome_p50_ms", "dot")):
            xs, ys = _steps(report["timeline"], _of(name, field))
            figure.add_trace(go.Scatter(
                x=xs, y=ys, name=f"{name} {'max' if dash == 'solid' else 'p50'}",
                mode="lines", line_shape="hv",
                line={"color": COLOURS.get(name, "#111827"), "dash": dash, "width": 2},
                hovertemplate="%{y:.2f} ms<extra>" + name + "</extra>"))
    _over_time(figure, report, "time from the request to the purchase's outcome, ms (log)")
    _log_ms_axis(figure)
    return figure


def _of(name: str, field: str) -> Value:
    """One strategy's figure of a second (None: none that second)."""
    def value(second: WriteSecond) -> float | None:
        figure = second["strategies"][name].get(field)
        return float(figure) if isinstance(figure, int | float) else None

    return value
