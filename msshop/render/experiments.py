"""`msshop experiment`'s report in the terminal, within 80 columns: what ran, two charts over
time drawn with plotext (reads answered, latency p99) with the fault windows shaded, the
figures during the faults against outside them, and the verdict.

plotext is imported only here, inside the functions, so no other command pays for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from rich.console import Console
from rich.table import Table
from rich.text import Text

from msshop.contracts.strategies import ReadStrategy
from msshop.instruments.experiments.report import STRATEGIES
from msshop.render.console import data, note

if TYPE_CHECKING:
    from msshop.instruments.experiments.report import (
        ExperimentReport,
        Outcome,
        Reads,
        Second,
        StrategyFigures,
        Window,
    )

WIDTH = 80
CHART_HEIGHT, PANEL_HEIGHT = 14, 9
# 256-colour codes, the same in plotext and rich. Blue and orange stay apart for
# colour-blind eyes; the page (instruments/experiments/page.py) uses the same pair.
STRATEGY_COLOURS = {ReadStrategy.DIRECT_CALL: 208, ReadStrategy.REPLICATED: 33}
# Different marker shapes, so that piped (colourless) text still tells the lines apart;
# SAMPLES is how each one's flat line looks, for the key under the chart.
STRATEGY_MARKERS = {ReadStrategy.DIRECT_CALL: "braille", ReadStrategy.REPLICATED: "hd"}
SAMPLES = {"braille": "⠤⠤", "hd": "▄▄"}
FAULT_SHADES, FAULT_COLOUR = ("░", "▒"), 240
VERDICT_COLOURS = {"valid": "green", "invalid": "red", "unknown": "yellow"}

Value = Callable[["Second", str], "float | None"]


def experiment(out: Console, report: ExperimentReport) -> None:
    """The whole report: header, the two charts, the summary table and the verdict."""
    width = min(out.width, WIDTH)
    _header(out, report)
    _availability_chart(out, report, width)
    _latency_chart(out, report, width)
    _figures_table(out, report)
    _staleness_and_purchases(out, report)
    _verdict(out, report["outcome"])


def report_files(out: Console, written: list[Path]) -> None:
    """`--report DIR` was written (write_report's paths, the page first): a line each, so a
    long path is not broken where it would be copied from."""
    for number, path in enumerate(written):
        note(out, f"wrote {path}" + (" (open it in a browser)" if number == 0 else ""))


def experiment_progress(out: Console, message: str) -> None:
    out.print(data(f"experiment: {message}"))  # wrapped at the console's width


def _header(out: Console, report: ExperimentReport) -> None:
    _lines(out, Text.assemble(("experiment ", "bold"), data(report["scenario"], "bold"), ": ",
                              data(report["title"]), f" (bus: {report['bus']})"))
    _lines(out, data(" ".join(report["shows"].split()), "dim"))
    _lines(out, Text.assemble(f"load: {report['read_rate']:g} reads/s per strategy, "
                              f"{report['purchase_rate']:g} purchases/s, "
                              f"{report['seconds']:g} s (", data(report["machine"]), ")"))
    out.print()


def _lines(out: Console, text: Text) -> None:
    """`text` wrapped within the report's width (rich would pad a wrapped line with the
    space it broke at), each line without trailing spaces, no blank line at the end."""
    text = text.copy()
    text.rstrip()
    for line in text.wrap(out, min(out.width, WIDTH)):
        line.rstrip()
        out.print(line, no_wrap=True, overflow="ignore", crop=False)


# -- the charts -------------------------------------------------------------------------------

class _Axis(NamedTuple):
    """The y axis: its range and the ticks on it, as plotted (log10 of ms for latency)."""

    low: float
    high: float
    ticks: list[float]
    labels: list[str]


AVAILABILITY_AXIS = _Axis(-5, 105, [0, 50, 100], ["0%", "50%", "100%"])


def _availability_chart(out: Console, report: ExperimentReport, width: int) -> None:
    """A panel per strategy: on one axis, two lines at 100% would hide each other."""
    import plotext

    fig = _new_figure(plotext, width, PANEL_HEIGHT * len(STRATEGIES))
    fig.subplots(len(STRATEGIES), 1)
    for row, strategy in enumerate(STRATEGIES, start=1):
        _plot(plotext, fig.subplot(row, 1), report, f"{strategy}: reads answered each "
              "second, %", _answered_percent, AVAILABILITY_AXIS, [strategy])
    _print_chart(out, str(fig.build()), plotext.uncolorize)
    _lines(out, _key(report["faults"]))
    out.print()


def _latency_chart(out: Console, report: ExperimentReport, width: int) -> None:
    """Both strategies on one axis, to compare them."""
    import plotext

    values = [v for second in report["timeline"] for s in STRATEGIES
              if (v := _p99(second, s)) is not None]
    if not values:
        _lines(out, Text("latency: no read was answered, so there is none to chart"))
        out.print()
        return
    axis = _log_ms_axis(values)
    fig = _new_figure(plotext, width, CHART_HEIGHT)
    # direct-call drawn last: where the lines meet, its (thinner) line stays on top
    _plot(plotext, fig, report, "latency p99 of the answered reads, ms (log scale)",
          _log_p99, axis, list(reversed(STRATEGIES)))
    _print_chart(out, str(fig.build()), plotext.uncolorize)
    _lines(out, _key(report["faults"]))
    out.print()


def _log_ms_axis(values: list[float]) -> _Axis:
    """A log scale, so a 2 s timeout and a 1 ms answer both stay readable on one axis. The
    chart plots log10(ms) on a linear axis labelled in ms: plotext's own log scale
    misplaces ticks given by hand."""
    low = math.floor(_log_ms(min(values)))
    high = max(math.ceil(_log_ms(max(values))), low + 1)
    powers = list(range(low, high + 1))
    return _Axis(low - 0.05, high + 0.05, [float(p) for p in powers],
                 [_ms_label(10.0 ** p) for p in powers])


def _new_figure(plotext: Any, width: int, height: int) -> Any:
    fig = plotext.figure  # one figure for the process: cleared of the last chart
    fig.clear()
    fig.plot_size(width, height)
    return fig


def _plot(plotext: Any, plot: Any, report: ExperimentReport, title: str, value: Value,
          axis: _Axis, strategies: list[ReadStrategy]) -> None:
    """One chart over time: a step line per strategy, the fault windows shaded behind."""
    plot.theme("simple")  # no background or frame colours: reads on dark and light terminals
    plot.title(title)
    end = _end(report)
    for number, window in enumerate(report["faults"]):
        shade = plotext.marker(_shade(number), FAULT_COLOUR)
        plot.draw(plot.rectangle((max(window["start"], 0), min(window["end"], end)),
                                 (axis.low, axis.high), marker=shade))
    for strategy in strategies:
        marker = plotext.marker(STRATEGY_MARKERS[strategy], STRATEGY_COLOURS[strategy])
        for xs, ys in _steps(report["timeline"], value, strategy):
            plot.draw(plot.signal(xs, ys, marker=marker).lines(True))
    plot.legend(active=False)  # the key goes under the chart, where it covers no line
    plot.ruler("x").lim(0, end)
    positions = _x_ticks(end)
    plot.ruler("x").ticks(positions, [f"{p:g}" for p in positions[:-1]] + [f"{end:g} s"])
    plot.ruler("y").lim(axis.low, axis.high)
    plot.ruler("y").ticks(axis.ticks, axis.labels)


def _shade(number: int) -> str:
    """Windows take turns between two shades, so one inside another still shows."""
    return FAULT_SHADES[number % len(FAULT_SHADES)]


def _ms_label(ms: float) -> str:
    return f"{ms:g}" if ms < 1000 else f"{ms / 1000:g} s"


def _log_ms(ms: float) -> float:
    return math.log10(max(ms, 0.01))


def _print_chart(out: Console, chart: str, uncolorize: Callable[[str], str]) -> None:
    """plotext's text through rich as data (never markup): coloured on a terminal, plain
    when piped or under NO_COLOR."""
    coloured = out.is_terminal and not out.no_color
    _lines(out, Text.from_ansi(chart) if coloured else Text(uncolorize(chart)))


def _key(faults: list[Window]) -> Text:
    """Which line is which, and what each shaded window was, a line each."""
    key = Text("  ")
    for strategy in STRATEGIES:
        key.append(SAMPLES[STRATEGY_MARKERS[strategy]],
                   style=f"color({STRATEGY_COLOURS[strategy]})")
        key.append(f" {strategy}   ")
    if not faults:
        return key.append("no faults")
    for number, window in enumerate(faults):
        key.append("\n  ")
        key.append(_shade(number) * 2, style=f"color({FAULT_COLOUR})")
        key.append_text(data(f" {window['label']}, {window['start']:.1f}-{window['end']:.1f} s"))
        if "detail" in window:  # what it hit, on a line of its own under its name
            key.append("\n     ")
            key.append_text(data(window["detail"]))
    return key


def _steps(timeline: list[Second], value: Value, strategy: str,
           ) -> Iterator[tuple[list[float], list[float]]]:
    """Each run of seconds that have a value, as a step line: flat over [t, t + 1). A
    second without a value (no reads, none answered) is a gap, not a zero."""
    xs: list[float] = []
    ys: list[float] = []
    for second in timeline:
        figure = value(second, strategy)
        if figure is None:
            if xs:
                yield xs, ys
            xs, ys = [], []
            continue
        xs += [second["t"], second["t"] + 1]
        ys += [figure, figure]
    if xs:
        yield xs, ys


def _x_ticks(end: float) -> list[float]:
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300) if end / s <= 8), 600)
    ticks = [float(t) for t in range(0, int(end), step)]
    return [*ticks, end] if end - ticks[-1] >= step / 2 else [*ticks[:-1], end]


def _end(report: ExperimentReport) -> float:
    last = max((s["t"] + 1 for s in report["timeline"]), default=0)
    return float(max(report["seconds"], last, 1))


def _reads(second: Second, strategy: str) -> Reads | None:
    return second["reads"].get(strategy)


def _answered_percent(second: Second, strategy: str) -> float | None:
    reads = _reads(second, strategy)
    total = reads["answered"] + reads["refused"] if reads else 0
    return 100 * reads["answered"] / total if reads and total else None


def _p99(second: Second, strategy: str) -> float | None:
    reads = _reads(second, strategy)
    return reads["p99_ms"] if reads else None


def _log_p99(second: Second, strategy: str) -> float | None:
    p99 = _p99(second, strategy)
    return None if p99 is None else _log_ms(p99)


# -- the figures and the verdict --------------------------------------------------------------

def _figures_table(out: Console, report: ExperimentReport) -> None:
    # the title printed apart: a table pads its title to the table's width
    _lines(out, Text("reads by strategy, during the faults and outside them", style="bold"))
    table = Table(box=None, pad_edge=False)
    for column in ("strategy", "", "reads", "answered", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("strategy", "") else "right")
    for strategy in STRATEGIES:
        stretches = (("during faults", report["during_faults"].get(strategy)),
                     ("outside them", report["outside_faults"].get(strategy)))
        for number, (stretch, figures) in enumerate(stretches):
            name = Text(strategy, style=f"color({STRATEGY_COLOURS[strategy]})")
            table.add_row(name if number == 0 else "", stretch, *_figure_cells(figures))
    # rendered, then printed line by line: a narrow console wraps cells and pads lines
    with out.capture() as rendered:
        out.print(table)
    _lines(out, Text.from_ansi(rendered.get()))
    out.print()


def _figure_cells(figures: StrategyFigures | None) -> list[str]:
    if figures is None:
        return ["-", "-", "-", "-"]
    availability = figures["availability"]
    return [f"{figures['reads']:,}",
            "-" if availability is None else f"{availability * 100:.1f}%",
            _ms(figures["p50_ms"]), _ms(figures["p99_ms"])]


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _staleness_and_purchases(out: Console, report: ExperimentReport) -> None:
    staleness = report["staleness"]
    _fact(out, "replicated staleness",
          f"p50 {_ms(staleness['p50'])} ms, p99 {_ms(staleness['p99'])} ms, max "
          f"{_ms(staleness['max'])} ms: from a purchase committed to its user's answer showing "
          f"it ({staleness['count']:,} probes)" if staleness["count"] else
          "no probe purchase was confirmed")
    confirmed = sum(s["purchases_confirmed"] for s in report["timeline"])
    refused = sum(s["purchases_refused"] for s in report["timeline"])
    _fact(out, "purchases", f"{confirmed:,} confirmed, {refused:,} refused")
    recovered = report["outcome"]["recovered_in_s"]
    if recovered is not None:
        took = f"{recovered:.1f} s" if recovered >= 1 else f"{recovered * 1000:.0f} ms"
        _fact(out, "recovery", f"the read model caught up {took} after the load and "
                               "the faults ended")


def _verdict(out: Console, outcome: Outcome) -> None:
    checked = outcome["checked"]
    _fact(out, "checked", f"{checked['confirmed']:,} confirmed purchases: "
                          f"{checked['stored']:,} stored once, {checked['replicated']:,} "
                          f"replicated once; {checked['verified_users']:,} users verified "
                          "against the monolith")
    out.print()
    verdict = outcome["verdict"]
    colour = VERDICT_COLOURS[verdict]
    line = Text.assemble((verdict, f"bold {colour}"))
    if verdict == "valid":
        line.append(": nothing lost, nothing twice; the read model equals the monolith's "
                    "join")
    else:
        line.append(": ", style=f"bold {colour}")
        line.append_text(data("; ".join(outcome["problems"]) or "no reason given", colour))
    _lines(out, line)


def _fact(out: Console, label: str, value: str) -> None:
    """A labelled line; a long value wraps under itself, not under the label."""
    indent = len("replicated staleness  ")
    lines = Text(value).wrap(out, min(out.width, WIDTH) - indent)
    for number, line in enumerate(lines):
        line.rstrip()
        row = Text()
        row.append(label.ljust(indent) if number == 0 else " " * indent, style="bold")
        out.print(row.append_text(line), no_wrap=True, overflow="ignore", crop=False)
