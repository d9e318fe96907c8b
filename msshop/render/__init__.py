"""All of msshop's terminal output, one module per topic; the only package that imports rich.

Every renderer takes typed data (the contracts' TypedDicts, the instruments' dataclasses)
and a Console, so tests render into a captured Console and compare strings. Colour is
decoration only: every fact is in the text, so output piped or under NO_COLOR (which rich
honours) reads the same. The CLI calls these by topic-free names, re-exported here.

A topic's module is imported when the CLI first asks for one of its names, so a command
pays only for what it draws: `msshop buy` imports no table, tree, progress bar or chart
(a command that talks to a running sandbox should start in ~100 ms). _TOPICS says where
each name lives; the imports under TYPE_CHECKING give them their types (a test checks the
two agree).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_TOPICS: dict[str, tuple[str, ...]] = {
    "answers": ("answer", "answer_json", "answer_with_trace", "compare", "freshness", "verify"),
    "bench": ("bench_json", "bench_progress", "bench_report", "bench_side_by_side"),
    "bus": ("dead_letters", "event_line", "replayed"),
    "console": ("Console", "error", "note", "terminal"),
    "demo": ("DemoStage", "demo_done"),
    "documents": (
        "comparison", "document", "event_on_the_bus", "followed", "json_line", "sandbox_down",
        "sandbox_up", "service_changed", "verification",
    ),
    "experiments": ("experiment", "experiment_json", "experiment_progress", "report_written"),
    "inspection": ("inspected", "inspected_rows", "inspected_rows_json", "inspection_json"),
    "logs": ("log_entry", "log_entry_json"),
    "sandbox": (
        "LivePrinter", "foreground_stopped", "ready", "replication_lines", "service_killed",
        "service_started", "service_stopped", "status", "status_json", "status_table",
        "status_unknown_json", "stopped", "up_detached",
    ),
    "shop": (
        "chaos", "order", "poisoned", "poisoned_json", "products", "reset_done", "seed_json",
        "seed_progress", "seed_report", "trespassed", "trespassed_json", "user",
    ),
    "traces": (
        "journey", "shown", "text_document", "timeline", "trace", "trace_list", "traces_json",
    ),
    "waiting": ("waited", "waited_json"),
}
_HOME = {name: topic for topic, names in _TOPICS.items() for name in names}

__all__ = sorted(_HOME)

if TYPE_CHECKING:
    from rich.console import Console as Console

    from msshop.render.answers import (
        answer as answer,
        answer_json as answer_json,
        answer_with_trace as answer_with_trace,
        compare as compare,
        freshness as freshness,
        verify as verify,
    )
    from msshop.render.bench import (
        bench_json as bench_json,
        bench_progress as bench_progress,
        bench_report as bench_report,
        bench_side_by_side as bench_side_by_side,
    )
    from msshop.render.bus import (
        dead_letters as dead_letters,
        event_line as event_line,
        replayed as replayed,
    )
    from msshop.render.console import (
        error as error,
        note as note,
        terminal as terminal,
    )
    from msshop.render.demo import (
        DemoStage as DemoStage,
        demo_done as demo_done,
    )
    from msshop.render.documents import (
        comparison as comparison,
        document as document,
        event_on_the_bus as event_on_the_bus,
        followed as followed,
        json_line as json_line,
        sandbox_down as sandbox_down,
        sandbox_up as sandbox_up,
        service_changed as service_changed,
        verification as verification,
    )
    from msshop.render.experiments import (
        experiment as experiment,
        experiment_json as experiment_json,
        experiment_progress as experiment_progress,
        report_written as report_written,
    )
    from msshop.render.inspection import (
        inspected as inspected,
        inspected_rows as inspected_rows,
        inspected_rows_json as inspected_rows_json,
        inspection_json as inspection_json,
    )
    from msshop.render.logs import (
        log_entry as log_entry,
        log_entry_json as log_entry_json,
    )
    from msshop.render.sandbox import (
        LivePrinter as LivePrinter,
        foreground_stopped as foreground_stopped,
        ready as ready,
        replication_lines as replication_lines,
        service_killed as service_killed,
        service_started as service_started,
        service_stopped as service_stopped,
        status as status,
        status_json as status_json,
        status_table as status_table,
        status_unknown_json as status_unknown_json,
        stopped as stopped,
        up_detached as up_detached,
    )
    from msshop.render.shop import (
        chaos as chaos,
        order as order,
        poisoned as poisoned,
        poisoned_json as poisoned_json,
        products as products,
        reset_done as reset_done,
        seed_json as seed_json,
        seed_progress as seed_progress,
        seed_report as seed_report,
        trespassed as trespassed,
        trespassed_json as trespassed_json,
        user as user,
    )
    from msshop.render.traces import (
        journey as journey,
        shown as shown,
        text_document as text_document,
        timeline as timeline,
        trace as trace,
        trace_list as trace_list,
        traces_json as traces_json,
    )
    from msshop.render.waiting import (
        waited as waited,
        waited_json as waited_json,
    )


def __getattr__(name: str) -> Any:
    topic = _HOME.get(name)
    if topic is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{topic}"), name)
    globals()[name] = value  # once found, an attribute like any other
    return value
