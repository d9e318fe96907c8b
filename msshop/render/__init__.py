"""All of msshop's terminal output, one module per topic; the only package that imports rich.

Every renderer takes typed data (the contracts' TypedDicts, the instruments' dataclasses)
and a Console, so tests render into a captured Console and compare strings. Colour is
decoration only: every fact is in the text, so output piped or under NO_COLOR (which rich
honours) reads the same. The CLI calls these by topic-free names, re-exported here.
"""

from rich.console import Console

from msshop.render.answers import answer, answer_json, answer_with_trace, compare, freshness, verify
from msshop.render.bench import bench, bench_json, bench_progress, bench_side_by_side
from msshop.render.bus import dead_letters, event_line, replayed
from msshop.render.console import console, error, note
from msshop.render.demo import DemoStage, demo_done
from msshop.render.experiments import (
    experiment,
    experiment_json,
    experiment_progress,
    report_written,
)
from msshop.render.sandbox import (
    LivePrinter,
    foreground_stopped,
    log_line,
    ready,
    replication_lines,
    service_killed,
    service_started,
    service_stopped,
    status,
    status_json,
    status_table,
    status_unknown_json,
    stopped,
    up_detached,
)
from msshop.render.shop import (
    chaos,
    order,
    poisoned,
    poisoned_json,
    products,
    reset_done,
    seed_progress,
    seed_report,
    trespassed,
    trespassed_json,
    user,
)
from msshop.render.traces import (
    journey,
    shown,
    text_document,
    timeline,
    trace,
    traces,
    traces_json,
)

__all__ = [
    "Console",
    "DemoStage",
    "LivePrinter",
    "answer",
    "answer_json",
    "answer_with_trace",
    "bench",
    "bench_json",
    "bench_progress",
    "bench_side_by_side",
    "chaos",
    "compare",
    "console",
    "dead_letters",
    "demo_done",
    "error",
    "event_line",
    "experiment",
    "experiment_json",
    "experiment_progress",
    "foreground_stopped",
    "freshness",
    "journey",
    "log_line",
    "note",
    "order",
    "poisoned",
    "poisoned_json",
    "products",
    "ready",
    "replayed",
    "replication_lines",
    "report_written",
    "reset_done",
    "seed_progress",
    "seed_report",
    "service_killed",
    "service_started",
    "service_stopped",
    "shown",
    "status",
    "status_json",
    "status_table",
    "status_unknown_json",
    "stopped",
    "text_document",
    "timeline",
    "trace",
    "traces",
    "traces_json",
    "trespassed",
    "trespassed_json",
    "up_detached",
    "user",
    "verify",
]
