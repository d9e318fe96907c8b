"""A purchases experiment's report in the terminal (issue 27), within 80 columns: what ran,
each write strategy's purchases over time (a panel each: confirmed, and rejected or failed,
each second), the slowest time to an outcome each second, the orders pending over time (the
invariant's slack), the figures, and each strategy's verdict with what it found.

The charts' machinery (plotext, the fault windows shaded, the x axis) is experiments.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from msshop.contracts.strategies import WriteStrategy
from msshop.render.console import data
from msshop.render.experiments import (
    FAULT_COLOUR,
    SAMPLES,
    VERDICT_COLOURS,
    WIDTH,
    _Axis,
    _fact,
    _lines,
    _log_ms,
    _log_ms_axis,
    _ms,
    _new_figure,
    _print_chart,
    _shade,
    _x_ticks,
)

if TYPE_CHECKING:
    from msshop.instruments.experiments.report import WriteSecond, WritesReport

PANEL_HEIGHT, CHART_HEIGHT = 9, 12
# 256-colour codes; orange and blue as the reads' (direct-call, and the saga that is
# asynchronous as replicated reads are), grey for the reference, purple for orchestration
COLOURS = {WriteStrategy.MONOLITH: 244, WriteStrategy.DIRECT_CALL: 208,
           WriteStrategy.SAGA: 33, WriteStrategy.SAGA_ORCHESTRATED: 135}
MARKERS = {WriteStrategy.MONOLITH: "hd", WriteStrategy.DIRECT_CALL: "braille",
           WriteStrategy.SAGA: "hd", WriteStrategy.SAGA_ORCHESTRATED: "braille"}
CONFIRMED_MARKER, OTHER_MARKER = "hd", "braille"  # in a strategy's own panel

Value = Callable[["WriteSecond", str], "float | None"]


def write_experiment(out: Console, report: WritesReport) -> None:
    width = min(out.width, WIDTH)
    _header(out, report)
    _outcomes_chart(out, report, width)
    _outcome_time_chart(out, report, width)
    _pending_chart(out, report, width)
    _figures(out, report)
    _verdicts(out, report)


def _header(out: Console, report: WritesReport) -> None:
    _lines(out, Text.assemble(("experiment ", "bold"), data(report["scenario"], "bold"), ": ",
                              data(report["title"]), f" (bus: {report['bus']})"))
    _lines(out, data(" ".join(report["shows"].split()), "dim"))
    _lines(out, Text.assemble(f"load: {report['purchase_rate']:g} purchases/s by each write "
                              f"strategy, {report['seconds']:g} s (", data(report["machine"]),
                              ")"))
    out.print()


def _outcomes_chart(out: Console, report: WritesReport, width: int) -> None:
    """A panel per strategy: its purchases sent each second that ended confirmed, and those
    that did not (rejected, failed, still pending)."""
    import plotext

    strategies = report["strategies"]
    top = max([1.0, *(float(sum(s["strategies"][name]["ended"].values()))
                      for s in report["timeline"] for name in strategies)])
    axis = _Axis(-top * 0.05, top * 1.05, [0.0, top], ["0", f"{top:g}"])
    fig = _new_figure(plotext, width, PANEL_HEIGHT * len(strategies))
    fig.subplots(len(strategies), 1)
    for row, name in enumerate(strategies, start=1):
        plot = fig.subplot(row, 1)
        _frame(plotext, plot, report, f"{name}: purchases each second", axis)
        colour = COLOURS[WriteStrategy(name)]
        _line(plotext, plot, report, lambda s, n: float(s["strategies"][n]["ended"]
                                                        ["confirmed"]),
              name, CONFIRMED_MARKER, colour)
        _line(plotext, plot, report, _not_confirmed, name, OTHER_MARKER, 160)
    _print_chart(out, str(fig.build()), plotext.uncolorize)
    key = Text("  ")
    key.append(SAMPLES[CONFIRMED_MARKER])
    key.append(" confirmed   ")
    key.append(SAMPLES[OTHER_MARKER], style="color(160)")
    key.append(" rejected, failed or left pending")
    _lines(out, key.append_text(_faults_key(report)))
    out.print()


def _outcome_time_chart(out: Console, report: WritesReport, width: int) -> None:
    """Every strategy on one axis: the slowest outcome of the purchases sent each second,
    on a log scale (a monolith's millisecond and a saga's outage on one axis)."""
    import plotext

    strategies = report["strategies"]
    values = [v for second in report["timeline"] for name in strategies
              if (v := second["strategies"][name]["outcome_max_ms"]) is not None]
    if not values:
        _lines(out, Text("time to an outcome: no purchase ended, so there is none to chart"))
        out.print()
        return
    axis = _log_ms_axis(values)
    fig = _new_figure(plotext, width, CHART_HEIGHT)
    _frame(plotext, fig, report, "the slowest time to an outcome each second, ms (log)", axis)
    for name in strategies:
        strategy = WriteStrategy(name)
        _line(plotext, fig, report, _log_outcome_max, name, MARKERS[strategy],
              COLOURS[strategy])
    _print_chart(out, str(fig.build()), plotext.uncolorize)
    _lines(out, _strategies_key(strategies))
    out.print()


def _log_outcome_max(second: WriteSecond, name: str) -> float | None:
    ms = second["strategies"][name]["outcome_max_ms"]
    return None if ms is None else _log_ms(ms)


def _strategies_key(strategies: list[str]) -> Text:
    key = Text("  ")
    for name in strategies:
        strategy = WriteStrategy(name)
        key.append(SAMPLES[MARKERS[strategy]], style=f"color({COLOURS[strategy]})")
        key.append(f" {name}  ")
    return key


def _pending_chart(out: Console, report: WritesReport, width: int) -> None:
    """Every strategy on one axis: the orders pending, sampled twice a second (a saga's
    semantic lock; the stock they hold is the invariant's slack)."""
    import plotext

    strategies = report["strategies"]
    values = [v for second in report["timeline"] for name in strategies
              if (v := second["strategies"][name]["pending_orders"]) is not None]
    top = float(max([1, *values]))
    axis = _Axis(-top * 0.05, top * 1.05, [0.0, top], ["0", f"{top:g}"])
    fig = _new_figure(plotext, width, CHART_HEIGHT)
    _frame(plotext, fig, report, "orders pending (sampled)", axis)
    for name in strategies:
        strategy = WriteStrategy(name)
        _line(plotext, fig, report, _pending, name, MARKERS[strategy], COLOURS[strategy])
    _print_chart(out, str(fig.build()), plotext.uncolorize)
    _lines(out, _strategies_key(strategies))
    out.print()


def _frame(plotext: Any, plot: Any, report: WritesReport, title: str, axis: _Axis) -> None:
    plot.theme("simple")
    plot.title(title)
    end = _end(report)
    for number, window in enumerate(report["faults"]):
        shade = plotext.marker(_shade(number), FAULT_COLOUR)
        plot.draw(plot.rectangle((max(window["start"], 0), min(window["end"], end)),
                                 (axis.low, axis.high), marker=shade))
    plot.legend(active=False)
    plot.ruler("x").lim(0, end)
    positions = _x_ticks(end)
    plot.ruler("x").ticks(positions, [f"{p:g}" for p in positions[:-1]] + [f"{end:g} s"])
    plot.ruler("y").lim(axis.low, axis.high)
    plot.ruler("y").ticks(axis.ticks, axis.labels)


def _line(plotext: Any, plot: Any, report: WritesReport, value: Value, name: str,
          marker_name: str, colour: int) -> None:
    xs: list[float] = []
    ys: list[float] = []
    for second in report["timeline"]:
        figure = value(second, name)
        if figure is None:
            continue
        xs += [second["t"], second["t"] + 1]
        ys += [figure, figure]
    if xs:
        marker = plotext.marker(marker_name, colour)
        plot.draw(plot.signal(xs, ys, marker=marker).lines(True))


def _not_confirmed(second: WriteSecond, name: str) -> float:
    ended = second["strategies"][name]["ended"]
    return float(ended["rejected"] + ended["failed"] + ended["pending"])


def _pending(second: WriteSecond, name: str) -> float | None:
    pending = second["strategies"][name]["pending_orders"]
    return None if pending is None else float(pending)


def _end(report: WritesReport) -> float:
    last = max((s["t"] + 1 for s in report["timeline"]), default=0)
    return float(max(report["seconds"], last, 1))


def _faults_key(report: WritesReport) -> Text:
    key = Text()
    for number, window in enumerate(report["faults"]):
        key.append("\n  ")
        key.append(_shade(number) * 2, style=f"color({FAULT_COLOUR})")
        key.append_text(data(f" {window['label']}, {window['start']:.1f}-{window['end']:.1f} s"))
    return key


def _figures(out: Console, report: WritesReport) -> None:
    _lines(out, Text("purchases by write strategy, and the time to each one's outcome",
                     style="bold"))
    table = Table(box=None, pad_edge=False)
    for column in ("strategy", "sent", "confirmed", "rejected", "failed", "p50 ms", "p99 ms",
                   "max ms"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for name in report["strategies"]:
        figures = report["figures"][name]
        outcome = figures["outcome_ms"]
        table.add_row(Text(name, style=f"color({COLOURS[WriteStrategy(name)]})"),
                      f"{figures['sent']:,}", f"{figures['confirmed']:,}",
                      f"{figures['rejected']:,}", f"{figures['failed']:,}",
                      _ms(outcome["p50"]), _ms(outcome["p99"]), _ms(outcome["max"]))
    with out.capture() as rendered:
        out.print(table)
    _lines(out, Text.from_ansi(rendered.get()))
    for name in report["strategies"]:
        figures = report["figures"][name]
        said = []
        if figures["answered_pending"]:
            lasted = figures["pending_for_ms"]
            left = f", {figures['pending']:,} never ended" if figures["pending"] else ""
            said.append(f"{figures['answered_pending']:,} answered pending, their outcome "
                        f"within p50 {_ms(lasted['p50'])} ms, max {_ms(lasted['max'])} "
                        f"ms{left}")
        if figures["reasons"]:
            said.append("rejected: " + ", ".join(
                f"{reason} {count:,}" for reason, count in figures["reasons"].items()))
        if said:
            _fact(out, name, "; ".join(said))
    recovered = report["recovered_in_s"]
    if recovered is not None:
        _fact(out, "recovery", f"every service caught up {recovered:.1f} s after the load "
                               "and the faults ended")
    out.print()


def _verdicts(out: Console, report: WritesReport) -> None:
    for name in report["strategies"]:
        outcome = report["outcomes"][name]
        colour = VERDICT_COLOURS[outcome["verdict"]]
        line = Text.assemble((f"{name}: ", "bold"), (outcome["verdict"], f"bold {colour}"))
        checked = outcome["checked"]
        if outcome["verdict"] == "valid":
            line.append(f": {checked['stored_once']:,} confirmed purchases stored once, each "
                        "holding its stock and credit once; nothing leaked or left pending")
        else:
            line.append(": ", style=f"bold {colour}")
            line.append_text(data("; ".join(outcome["problems"]) or "no reason given",
                                  colour))
        _lines(out, line)
