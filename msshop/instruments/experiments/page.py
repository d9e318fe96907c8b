"""`msshop experiment --report DIR`: the report as one self-contained HTML page (index.html)
and its figures as JSON (report.json) beside it.

The page opens offline: plotly.js travels inside it (no CDN), and so does the data, as the
figures' JSON that plotly writes (it escapes <, > and /). Every word that comes from the
report (a scenario's title, what it shows, a fault's label: they come from TOML files) is
HTML-escaped, in the page and in the charts' text alike (plotly.js reads a few tags, such as
<a> and <b>, in a chart's text).

plotly is imported only here, inside the functions, so no other command pays for it.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msshop.contracts.errors import InvalidArgument
from msshop.contracts.strategies import ReadStrategy
from msshop.instruments.experiments.report import STRATEGIES

if TYPE_CHECKING:
    from msshop.instruments.experiments.report import (
        ExperimentReport,
        Outcome,
        Second,
        StrategyFigures,
        Window,
        WriteSecond,
        WritesReport,
    )

# the terminal's pair (render/experiments.py): blue and orange stay apart for colour-blind eyes
STRATEGY_COLOURS = {ReadStrategy.DIRECT_CALL: "#ea580c", ReadStrategy.REPLICATED: "#2563eb"}
VERDICT_COLOURS = {"valid": "#15803d", "invalid": "#b91c1c", "unknown": "#a16207"}
FAULT_FILL = "#9ca3af"
CHART_HEIGHT = 400
SECONDS = "seconds from the start of the load"

Value = Callable[["Second"], "float | None"]


def make_room(directory: Path) -> list[Path]:
    """Make `directory` for a report, before the run (a bad directory is said at once, not
    after the experiment); one line if it cannot be. The folders it made, deepest first."""
    if directory.exists() and not directory.is_dir():
        raise InvalidArgument(f"cannot write the report into {directory}: a file is in the "
                              "way; choose another {report}", "report")
    made = []
    for folder in (directory, *directory.parents):
        if folder.exists():
            break
        made.append(folder)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgument(f"cannot write the report into {directory}: "
                              f"{exc.strerror or exc}; choose another {{report}}",
                              "report") from None
    return made


@contextlib.contextmanager
def taken_back_on_failure(made: list[Path]) -> Iterator[None]:
    """Within: the run that fills the folders make_room `made`. If it fails (or is
    interrupted), they are removed again while still empty: no empty report folder is
    left behind a run that wrote no report."""
    try:
        yield
    except BaseException:
        for folder in made:
            with contextlib.suppress(OSError):  # not empty: something of it was written
                folder.rmdir()
        raise


def write_report(report: ExperimentReport | WritesReport, directory: Path) -> list[Path]:
    """index.html and report.json in `directory` (made if missing); the paths written. A
    directory that cannot be written is one line."""
    from msshop.instruments.experiments.writes_page import writes_page

    made = writes_page(report) if report["workload"] == "purchases" else page(report)
    return write_files(directory, {directory / "index.html": made,
                                   directory / "report.json": json.dumps(report, indent=2)
                                   + "\n"})


def write_files(directory: Path, files: dict[Path, str]) -> list[Path]:
    """Each file (UTF-8) in `directory`, made if missing; the paths written. A directory
    that cannot be written is one line, naming the option ({report})."""
    make_room(directory)
    try:
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument(f"cannot write the report into {directory}: "
                              f"{exc.strerror or exc}; choose another {{report}}",
                              "report") from None
    return list(files)


def page(report: ExperimentReport) -> str:
    """The whole page: what ran and what it shows, the verdict, the charts and the figures."""
    charts = [
        ("availability", _availability(report), "Each second, the share of user-orders "
         "reads each strategy answered (2xx). Shaded: the faults, while they held."),
        ("latency", _latency(report), "Each second, how long the answered reads took: p50 "
         "dotted, p99 solid, on a log scale (a timeout and a 1 ms answer on one axis)."),
        ("purchases", _purchases(report), "Each second, purchases confirmed and refused "
         "(bars); the orders' events not yet on the bus and the events the read model has "
         "not applied yet (lines, right axis)."),
        ("staleness-over-time", _staleness_over_time(report), "Each second, how long the "
         "probe purchases confirmed in it waited until the replicated read model showed "
         "them: the median and the longest, on a log scale."),
        ("staleness", _staleness(report), "How long after a purchase committed the "
         "replicated read model showed it, for every probe purchase."),
    ]
    sections = [_chart_section(name, figure, caption, include_plotlyjs=number == 0)
                for number, (name, figure, caption) in enumerate(charts)]
    parts = {"title": escape(report["title"]), "heading": _heading(report),
             "verdict": _verdict(report["outcome"]), "timecharts": "\n".join(sections[:2]),
             "figures": _figures_table(report), "morecharts": "\n".join(sections[2:]),
             "faults": _faults_list(report["faults"])}
    # one pass, so that nothing put in (a title that reads "{faults}") is replaced again
    return re.sub(r"\{(\w+)\}", lambda name: parts[name[1]], PAGE)


# -- the words around the charts ------------------------------------------------------------

def _heading(report: ExperimentReport) -> str:
    shows = " ".join(report["shows"].split())
    return (f'<p class="kicker">msshop experiment · {escape(report["scenario"])}</p>\n'
            f"<h1>{escape(report['title'])}</h1>\n"
            f'<p class="shows">{escape(shows)}</p>\n'
            f'<p class="meta">bus: {escape(report["bus"])} · load: '
            f"{report['read_rate']:g} reads/s per strategy, {report['purchase_rate']:g} "
            f"purchases/s, {report['seconds']:g} s · started {escape(report['started_at'])} "
            f"· {escape(report['machine'])}</p>")


def _verdict(outcome: Outcome) -> str:
    verdict, checked = outcome["verdict"], outcome["checked"]
    problems = "".join(f"<li>{escape(p)}</li>" for p in outcome["problems"])
    recovered = outcome["recovered_in_s"]
    return (f'<section class="verdict" style="--colour: {VERDICT_COLOURS[verdict]}">'
            f'<p><span class="badge">{escape(verdict)}</span> '
            f"{escape(_verdict_sentence(outcome))}</p>"
            + (f"<ul>{problems}</ul>" if problems else "")
            + f'<p class="checked">checked: {checked["confirmed"]:,} confirmed purchases: '
            f'{checked["stored"]:,} stored once, {checked["replicated"]:,} replicated once; '
            f'{checked["verified_users"]:,} users verified against the monolith'
            + ("" if recovered is None else
               f"; the read model caught up {_duration(recovered)} after the load and the "
               "faults ended")
            + "</p></section>")


def _verdict_sentence(outcome: Outcome) -> str:
    if outcome["verdict"] == "valid":
        return ("every confirmed purchase is stored once and in the read model once, and "
                "verify found the read model equal to the monolith's join.")
    if outcome["verdict"] == "invalid":
        return "the run broke a guarantee:"
    return "the checker could not tell:"


def _figures_table(report: ExperimentReport) -> str:
    rows = []
    for strategy in STRATEGIES:
        stretches = (("during the faults", report["during_faults"].get(strategy)),
                     ("outside them", report["outside_faults"].get(strategy)))
        for number, (stretch, figures) in enumerate(stretches):
            name = (f'<th rowspan="2" style="color: {STRATEGY_COLOURS[strategy]}">'
                    f"{strategy}</th>" if number == 0 else "")
            cells = "".join(f"<td>{cell}</td>" for cell in _figure_cells(figures))
            rows.append(f"<tr>{name}<td class='stretch'>{stretch}</td>{cells}</tr>")
    staleness = report["staleness"]
    confirmed = sum(s["purchases_confirmed"] for s in report["timeline"])
    refused = sum(s["purchases_refused"] for s in report["timeline"])
    return (
        '<table class="figures"><thead><tr><th>strategy</th><th></th><th>reads</th>'
        "<th>answered</th><th>p50 ms</th><th>p99 ms</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>"
        f'<p class="facts">replicated staleness: p50 {_ms(staleness["p50"])} ms, p99 '
        f'{_ms(staleness["p99"])} ms, max {_ms(staleness["max"])} ms '
        f'({staleness["count"]:,} probes) · purchases: {confirmed:,} confirmed, '
        f"{refused:,} refused</p>")


def _figure_cells(figures: StrategyFigures | None) -> list[str]:
    if figures is None:
        return ["-"] * 4
    availability = figures["availability"]
    return [f"{figures['reads']:,}",
            "-" if availability is None else f"{availability * 100:.1f}%",
            _ms(figures["p50_ms"]), _ms(figures["p99_ms"])]


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def _faults_list(faults: list[Window]) -> str:
    if not faults:
        return "<p>No faults: this run is the baseline.</p>"
    items = "".join(f"<li><b>{escape(w['label'])}</b> from {w['start']:.1f} s to "
                    f"{w['end']:.1f} s ({escape(w['kind'])} {escape(w['target'])})"
                    + (f": {escape(w['detail'])}" if "detail" in w else "") + "</li>"
                    for w in faults)
    return f"<ul>{items}</ul>"


# -- the charts --------------------------------------------------------------------------------

def _chart_section(name: str, figure: Any, caption: str, include_plotlyjs: bool) -> str:
    import plotly.io

    chart = plotly.io.to_html(figure, full_html=False, include_plotlyjs=include_plotlyjs,
                              div_id=f"chart-{name}", default_height=f"{CHART_HEIGHT}px",
                              config={"displaylogo": False, "responsive": True})
    return f'<section class="chart">\n{chart}\n<p class="caption">{caption}</p>\n</section>'


def _availability(report: ExperimentReport) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    # replicated wide under direct-call narrow: where both answer everything, both show
    for strategy, width in ((ReadStrategy.REPLICATED, 7), (ReadStrategy.DIRECT_CALL, 2.5)):
        xs, ys = _steps(report["timeline"], partial(_answered_percent, strategy=strategy))
        figure.add_trace(go.Scatter(
            x=xs, y=ys, name=strategy, mode="lines", line_shape="hv",
            line={"color": STRATEGY_COLOURS[strategy], "width": width},
            opacity=0.75 if strategy is ReadStrategy.REPLICATED else 1,
            legendrank=STRATEGIES.index(strategy),
            hovertemplate="%{y:.0f}% answered<extra>" + strategy + "</extra>"))
    _over_time(figure, report, "reads answered each second, %")
    figure.update_yaxes(range=[-4, 104], ticksuffix="%", title_text="answered")
    return figure


def _latency(report: ExperimentReport) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for strategy in STRATEGIES:
        for quantile, dash in (("p99", "solid"), ("p50", "dot")):
            xs, ys = _steps(report["timeline"],
                            partial(_latency_of, strategy=strategy, quantile=quantile))
            figure.add_trace(go.Scatter(
                x=xs, y=ys, name=f"{strategy} {quantile}", mode="lines", line_shape="hv",
                line={"color": STRATEGY_COLOURS[strategy], "dash": dash,
                      "width": 2.5 if dash == "solid" else 1.5},
                hovertemplate="%{y:.2f} ms<extra>" + f"{strategy} {quantile}</extra>"))
    _over_time(figure, report, "latency of the answered reads, ms (log scale)")
    _log_ms_axis(figure)
    return figure


def _purchases(report: ExperimentReport) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(specs=[[{"secondary_y": True}]])
    timeline = report["timeline"]
    middles = [s["t"] + 0.5 for s in timeline]
    for counts, name, colour in (([s["purchases_confirmed"] for s in timeline], "confirmed",
                                  "#16a34a"),
                                 ([s["purchases_refused"] for s in timeline], "refused",
                                  "#dc2626")):
        figure.add_trace(go.Bar(x=middles, y=counts, name=f"purchases {name}", width=0.8,
                                marker_color=colour, opacity=0.85), secondary_y=False)
    waiting: list[tuple[Value, str, str]] = [
        (lambda s: s["outbox_backlog"], "outbox backlog (orders)", "#7c3aed"),
        (lambda s: s["consumer_behind"], "read model behind the bus", "#0891b2")]
    for value, name, colour in waiting:
        xs, ys = _steps(timeline, value)
        figure.add_trace(go.Scatter(x=xs, y=ys, name=name, mode="lines", line_shape="hv",
                                    line={"color": colour, "width": 2}), secondary_y=True)
    _over_time(figure, report, "purchases, and events waiting, each second")
    figure.update_layout(barmode="stack", bargap=0, legend_traceorder="normal")
    figure.update_yaxes(title_text="purchases / s", secondary_y=False)
    most = max((s[k] or 0 for s in timeline for k in ("outbox_backlog", "consumer_behind")),
               default=0)
    # at least 0 to 5: an axis of nothing waiting would count in fractions of an event
    figure.update_yaxes(title_text="events waiting", secondary_y=True, showgrid=False,
                        range=[0, max(5, most * 1.05)], tickmode="auto", tickformat=",d")
    return figure


def _staleness_over_time(report: ExperimentReport) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    shown: list[tuple[Value, str, str]] = [
        (lambda s: s["staleness_max_ms"], "max", "solid"),
        (lambda s: s["staleness_p50_ms"], "p50", "dot")]
    for value, name, dash in shown:
        xs, ys = _steps(report["timeline"], value)
        figure.add_trace(go.Scatter(
            x=xs, y=ys, name=f"staleness {name}", mode="lines", line_shape="hv",
            line={"color": STRATEGY_COLOURS[ReadStrategy.REPLICATED], "dash": dash, "width": 2},
            hovertemplate="%{y:,.1f} ms<extra>" + f"staleness {name}</extra>"))
    _over_time(figure, report, "replicated staleness of the purchases confirmed each "
                               "second, ms (log scale)")
    _log_ms_axis(figure)
    return figure


def _staleness(report: ExperimentReport) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure(go.Histogram(x=report["staleness_ms"], name="probes",
                                    marker_color=STRATEGY_COLOURS[ReadStrategy.REPLICATED],
                                    opacity=0.8,
                                    hovertemplate="%{x} ms: %{y} probes<extra></extra>"))
    staleness = report["staleness"]
    for name, value in (("p50", staleness["p50"]), ("p99", staleness["p99"])):
        if value is not None:
            figure.add_vline(x=value, line={"color": "#111827", "dash": "dash", "width": 1},
                             annotation_text=f"{name} {_ms(value)} ms",
                             annotation_position="top right")
    if not report["staleness_ms"]:
        figure.add_annotation(text="no probe purchase was confirmed", showarrow=False,
                              xref="paper", yref="paper", x=0.5, y=0.5)
    _style(figure, "replicated staleness: from a purchase committed to its answer showing it")
    figure.update_layout(showlegend=False)
    figure.update_xaxes(title_text="ms", rangemode="tozero")
    figure.update_yaxes(title_text="probe purchases")
    return figure


def _over_time(figure: Any, report: ExperimentReport | WritesReport, title: str) -> None:
    """The shared look of a chart over time: seconds across, the faults shaded."""
    _style(figure, title)
    figure.update_layout(hovermode="x unified")
    figure.update_xaxes(range=[0, _end(report)], title_text=SECONDS)
    for window in report["faults"]:
        figure.add_vrect(x0=window["start"], x1=window["end"], fillcolor=FAULT_FILL,
                         opacity=0.22, layer="below", line_width=0,
                         annotation_text=escape(window["label"]),
                         annotation_position="top left",
                         # above the plot, from the band's left edge: inside, it would
                         # cover the lines at the top
                         annotation={"y": 1, "yanchor": "bottom", "xanchor": "left",
                                     "font": {"size": 12, "color": "#374151"}})


def _log_ms_axis(figure: Any) -> None:
    """A log axis of ms ticked 1, 2, 5, 10 … 500, 1 s, 2 s …: plotly's own log ticks
    write 20 as a bare "2"."""
    values = [m * 10.0 ** p for p in range(-2, 6) for m in (1, 2, 5)]
    labels = [f"{v:g}" if v < 1000 else f"{v / 1000:g} s" for v in values]
    figure.update_yaxes(type="log", title_text="ms", tickmode="array", tickvals=values,
                        ticktext=labels)


def _style(figure: Any, title: str) -> None:
    figure.update_layout(
        template="plotly_white", title={"text": title, "x": 0, "xanchor": "left",
                                        "font": {"size": 16}},
        font={"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 13},
        # the legend under the chart: above it are the title and the faults' names
        margin={"l": 60, "r": 30, "t": 70, "b": 40},
        legend={"orientation": "h", "x": 0, "y": -0.2, "xanchor": "left", "yanchor": "top"})


# -- the data under the charts -------------------------------------------------------------------

def _steps(timeline: Iterable[Second] | Iterable[WriteSecond],
           value: Callable[[Any], float | None]) -> tuple[list[float], list[float | None]]:
    """Points for a step line (line_shape "hv"): one at the start of each second, one more at
    the end of each run, so that the last second of a run is drawn too; a second without a
    value (no reads, none answered) is a gap, not a zero."""
    xs: list[float] = []
    ys: list[float | None] = []
    previous: float | None = None
    end = 0
    for second in timeline:
        figure = value(second)
        if figure is None and previous is not None:
            xs += [second["t"], second["t"]]
            ys += [previous, None]
        elif figure is not None:
            xs.append(second["t"])
            ys.append(figure)
        previous, end = figure, second["t"] + 1
    if previous is not None:
        xs.append(end)
        ys.append(previous)
    return xs, ys


def _end(report: ExperimentReport | WritesReport) -> float:
    last = max((s["t"] + 1 for s in report["timeline"]), default=0)
    return float(max(report["seconds"], last, 1))


def _answered_percent(second: Second, strategy: str) -> float | None:
    reads = second["reads"].get(strategy)
    total = reads["answered"] + reads["refused"] if reads else 0
    return 100 * reads["answered"] / total if reads and total else None


def _latency_of(second: Second, strategy: str, quantile: str) -> float | None:
    reads = second["reads"].get(strategy)
    if reads is None:
        return None
    return reads["p99_ms"] if quantile == "p99" else reads["p50_ms"]


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · msshop experiment</title>
<style>
  body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #111827;
         margin: 0; background: #f9fafb; }
  main { max-width: 1080px; margin: 0 auto; padding: 2rem 1.5rem 3rem; }
  .kicker { color: #6b7280; margin: 0; font-size: .9rem; letter-spacing: .02em; }
  h1 { font-size: 1.7rem; margin: .2rem 0 .6rem; }
  h2 { font-size: 1.15rem; margin: 2rem 0 .6rem; }
  .shows { font-size: 1.05rem; max-width: 52rem; margin: 0 0 .6rem; }
  .meta { color: #6b7280; font-size: .9rem; margin: 0 0 1.2rem; }
  .verdict { border-left: 6px solid var(--colour); background: #fff; padding: .8rem 1.1rem;
             border-radius: 6px; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
  .verdict p { margin: .2rem 0; }
  .verdict ul { margin: .3rem 0 .3rem 1.2rem; padding: 0; }
  .badge { background: var(--colour); color: #fff; font-weight: 700; padding: .1rem .6rem;
           border-radius: 999px; margin-right: .4rem; }
  .checked { color: #4b5563; font-size: .9rem; }
  .chart { background: #fff; border-radius: 6px; margin: 1.2rem 0; padding: .4rem .6rem;
           box-shadow: 0 1px 2px rgba(0,0,0,.06); }
  .caption { color: #4b5563; font-size: .9rem; margin: .2rem .6rem .6rem; }
  table.figures { border-collapse: collapse; background: #fff; border-radius: 6px;
                  box-shadow: 0 1px 2px rgba(0,0,0,.06); font-variant-numeric: tabular-nums; }
  .figures th, .figures td { padding: .35rem .9rem; text-align: right;
                             border-bottom: 1px solid #f3f4f6; }
  .figures th:first-child, .figures td.stretch { text-align: left; }
  .figures tbody th { text-align: left; vertical-align: top; }
  .facts { color: #374151; margin: .6rem 0; }
  footer { color: #6b7280; font-size: .85rem; margin-top: 2rem; }
</style>
</head>
<body>
<main>
{heading}
{verdict}
<h2>Over time</h2>
{timecharts}
<h2>During the faults and outside them</h2>
{figures}
<h2>Writes, events and staleness</h2>
{morecharts}
<h2>The faults</h2>
{faults}
<footer>Made by <code>msshop experiment</code>. Every figure on this page is in
report.json beside it.</footer>
</main>
</body>
</html>
"""
