"""`msshop bench`'s report."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from msshop.contracts.strategies import ReadStrategy, WriteStrategy
from msshop.render.console import note

if TYPE_CHECKING:
    from msshop.instruments.bench.report import BenchReport

#: the strategies measured by orders per user, in the order the table shows them
SCALING = (ReadStrategy.REPLICATED, ReadStrategy.DIRECT_CALL)


def bench_report(out: Console, report: BenchReport) -> None:
    latency = report["latency_ms"]
    floor = latency["floor"]["p50"]
    table = Table(title="latency as a caller of the query service sees it (user with 10 orders)",
                  box=None, pad_edge=False, title_justify="left")
    for column in ("endpoint", "p50 ms", "p99 ms", "p50 / floor"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for name, figures in latency.items():
        table.add_row(name, f"{figures['p50']:.3f}", f"{figures['p99']:.3f}",
                      f"{figures['p50'] / floor:.2f}x")
    out.print(table)
    scaling = Table(title="by orders per user: p50 ms (sequential network stages)", box=None,
                    pad_edge=False, title_justify="left")
    scaling.add_column("orders", justify="right")
    for strategy in SCALING:
        scaling.add_column(strategy, justify="right")
    for size, strategies in report["by_orders"].items():
        scaling.add_row(str(size), *(f"{strategies[s]['p50']:.3f} ({strategies[s]['stages']})"
                                     for s in SCALING))
    out.print(scaling)
    lag = report["lag_ms"]
    note(out, f"purchases: {report['purchases']['count']:,} from one client at "
              f"{report['purchases']['per_second']:,.0f}/s; replication lag p50 "
              f"{lag['p50']:.2f} ms, p99 {lag['p99']:.2f} ms")
    sustained, paced = report["sustained"], report["paced"]
    note(out, f"sustained: {sustained['per_second']:,.0f} purchases/s from "
              f"{sustained['clients']} clients ({sustained['failed']:,} refused); replication "
              f"lag p50 {sustained['lag_ms']['p50']:.2f} ms, p99 "
              f"{sustained['lag_ms']['p99']:.2f} ms")
    note(out, f"paced at {paced['target_per_second']:,.0f}/s: {paced['per_second']:,.0f}/s "
              f"achieved; replication lag p50 {paced['lag_ms']['p50']:.2f} ms, p99 "
              f"{paced['lag_ms']['p99']:.2f} ms")
    writes = Table(title="writes: purchases/s, and ms to the outcome", box=None,
                   pad_edge=False, title_justify="left")
    for column in ("write", "purchases/s", "at rate/s", "p50 ms", "p99 ms"):
        writes.add_column(column, justify="left" if column == "write" else "right")
    for write, made in report["writes"].items():
        writes.add_row(write, f"{made['per_second']:,.0f} ({made['clients']})",
                       f"{made['target_per_second']:,.0f}",
                       f"{made['outcome_ms']['p50']:.2f}", f"{made['outcome_ms']['p99']:.2f}")
    out.print(writes)
    note(out, f"rebuild: {report['rebuild']['events']:,} events in "
              f"{report['rebuild']['seconds']:.2f} s ({report['rebuild']['per_second']:,.0f}"
              " events/s)")
    note(out, f"up: {report['up_ms']:.0f} ms from `up` to all healthy (fork to healthy "
              f"{report['fork_to_healthy_ms']:.0f} ms at most)")


def bench_side_by_side(out: Console, reports: list[BenchReport]) -> None:
    """Each backend's figures in a column of one table, then each report in full."""
    for report in reports:
        out.print(Text(f"on the {report['bus']} bus", style="bold"))
        bench_report(out, report)
        out.print()
    table = Table(title="side by side", box=None, pad_edge=False, title_justify="left")
    table.add_column("figure")
    for report in reports:
        table.add_column(report["bus"], justify="right")
    rows: list[tuple[str, Callable[[BenchReport], str]]] = [
        ("replicated p50 / floor", lambda r: _over(r, ReadStrategy.REPLICATED, "floor")),
        ("replicated p50 / floor rows",
         lambda r: _over(r, ReadStrategy.REPLICATED, "floor rows")),
        ("direct-call p50 / floor", lambda r: _over(r, ReadStrategy.DIRECT_CALL, "floor")),
        ("lag p50 at 1,000/s, ms", lambda r: f"{r['paced']['lag_ms']['p50']:.2f}"),
        ("lag p99 at 1,000/s, ms", lambda r: f"{r['paced']['lag_ms']['p99']:.2f}"),
        ("purchases/s, 16 clients", lambda r: f"{r['sustained']['per_second']:,.0f}"),
        ("purchases/s, 1 client", lambda r: f"{r['purchases']['per_second']:,.0f}"),
        *((f"{strategy} purchases/s", _write(strategy)) for strategy in WriteStrategy),
        *((f"{strategy} outcome p99 ms", _outcome(strategy)) for strategy in WriteStrategy),
        ("rebuild, events/s", lambda r: f"{r['rebuild']['per_second']:,.0f}"),
        ("up -> healthy, ms", lambda r: f"{r['up_ms']:.0f}"),
    ]
    for label, figure in rows:
        table.add_row(label, *(figure(report) for report in reports))
    out.print(table)


def _write(strategy: WriteStrategy) -> Callable[[BenchReport], str]:
    return lambda r: f"{r['writes'][strategy]['per_second']:,.0f}"


def _outcome(strategy: WriteStrategy) -> Callable[[BenchReport], str]:
    return lambda r: f"{r['writes'][strategy]['outcome_ms']['p99']:.2f}"


def _over(report: BenchReport, endpoint: str, floor: str) -> str:
    latency = report["latency_ms"]
    return f"{latency[endpoint]['p50'] / latency[floor]['p50']:.2f}x"


def bench_progress(out: Console, message: str) -> None:
    note(out, f"bench: {message}")
