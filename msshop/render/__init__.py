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
    "answers": ("answer", "answer_with_trace", "compare", "freshness", "verify"),
    "bench": ("bench_progress", "bench_report", "bench_side_by_side"),
    "bus": ("dead_letters", "event_line", "replay_summary"),
    "challenges": ("challenge_ladder", "challenge_list", "challenge_progress",
                   "challenge_result", "challenge_rung", "challenge_show"),
    "console": ("Console", "error", "note", "terminal"),
    "demo": ("DemoStage", "demo_summary"),
    "documents": (
        "comparison", "document", "event_on_the_bus", "journey_document", "json_line",
        "log_record", "poison_event", "query_answer", "sandbox_down", "sandbox_up",
        "service_changed", "status_unknown", "verification",
    ),
    "experiments": ("experiment", "experiment_progress", "report_files"),
    "write_experiments": ("write_experiment",),
    "inspection": ("database_overview", "table_rows"),
    "logs": ("log_entry",),
    "protocol": ("new_service", "protocol_page"),
    "repair": ("files_checked", "repair_report"),
    "sandbox": (
        "LivePrinter", "foreground_end", "kill_note", "ready", "replication_lines", "shutdown",
        "start_note", "status", "status_table", "stop_note", "up_detached",
    ),
    "shop": (
        "chaos", "dashboard_address", "order", "poison_note", "products", "rejected",
        "reset_note", "saga_order", "sagas",
        "seed_progress", "seed_report", "seed_wait_failed", "trespass_broken",
        "trespass_refusal", "user",
    ),
    "traces": ("journey", "text_document", "timeline", "trace", "trace_list", "trace_views"),
    "waiting": ("wait_report",),
}
_HOME = {name: topic for topic, names in _TOPICS.items() for name in names}

__all__ = sorted(_HOME)

if TYPE_CHECKING:
    from rich.console import Console as Console

    from msshop.render.answers import (
        answer as answer,
        answer_with_trace as answer_with_trace,
        compare as compare,
        freshness as freshness,
        verify as verify,
    )
    from msshop.render.bench import (
        bench_progress as bench_progress,
        bench_report as bench_report,
        bench_side_by_side as bench_side_by_side,
    )
    from msshop.render.bus import (
        dead_letters as dead_letters,
        event_line as event_line,
        replay_summary as replay_summary,
    )
    from msshop.render.challenges import (
        challenge_ladder as challenge_ladder,
        challenge_list as challenge_list,
        challenge_progress as challenge_progress,
        challenge_result as challenge_result,
        challenge_rung as challenge_rung,
        challenge_show as challenge_show,
    )
    from msshop.render.console import (
        error as error,
        note as note,
        terminal as terminal,
    )
    from msshop.render.demo import (
        DemoStage as DemoStage,
        demo_summary as demo_summary,
    )
    from msshop.render.documents import (
        comparison as comparison,
        document as document,
        event_on_the_bus as event_on_the_bus,
        journey_document as journey_document,
        json_line as json_line,
        log_record as log_record,
        poison_event as poison_event,
        query_answer as query_answer,
        sandbox_down as sandbox_down,
        sandbox_up as sandbox_up,
        service_changed as service_changed,
        status_unknown as status_unknown,
        verification as verification,
    )
    from msshop.render.experiments import (
        experiment as experiment,
        experiment_progress as experiment_progress,
        report_files as report_files,
    )
    from msshop.render.inspection import (
        database_overview as database_overview,
        table_rows as table_rows,
    )
    from msshop.render.logs import (
        log_entry as log_entry,
    )
    from msshop.render.protocol import (
        new_service as new_service,
        protocol_page as protocol_page,
    )
    from msshop.render.repair import (
        files_checked as files_checked,
        repair_report as repair_report,
    )
    from msshop.render.sandbox import (
        LivePrinter as LivePrinter,
        foreground_end as foreground_end,
        kill_note as kill_note,
        ready as ready,
        replication_lines as replication_lines,
        shutdown as shutdown,
        start_note as start_note,
        status as status,
        status_table as status_table,
        stop_note as stop_note,
        up_detached as up_detached,
    )
    from msshop.render.shop import (
        chaos as chaos,
        dashboard_address as dashboard_address,
        order as order,
        poison_note as poison_note,
        products as products,
        rejected as rejected,
        reset_note as reset_note,
        saga_order as saga_order,
        sagas as sagas,
        seed_progress as seed_progress,
        seed_report as seed_report,
        seed_wait_failed as seed_wait_failed,
        trespass_broken as trespass_broken,
        trespass_refusal as trespass_refusal,
        user as user,
    )
    from msshop.render.traces import (
        journey as journey,
        text_document as text_document,
        timeline as timeline,
        trace as trace,
        trace_list as trace_list,
        trace_views as trace_views,
    )
    from msshop.render.waiting import (
        wait_report as wait_report,
    )
    from msshop.render.write_experiments import write_experiment as write_experiment


def __getattr__(name: str) -> Any:
    topic = _HOME.get(name)
    if topic is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{topic}"), name)
    globals()[name] = value  # once found, an attribute like any other
    return value
