"""The stored traces: one shown again or exported (trace), the list of them (traces)."""

from __future__ import annotations

from pathlib import Path

import typer

from msshop.cli.app import settings
from msshop.cli.emit import Outcome, emit
from msshop.cli.options import check_view, json_option, read_strategy_filter, view_option
from msshop.contracts.errors import UsageError
from msshop.contracts.limits import MAX_ID
from msshop.contracts.strategies import ReadStrategy


def trace(
    ctx: typer.Context,
    trace_id: str = typer.Argument("last", help="A trace id, or 'last'."),
    export: str | None = typer.Option(None, "--export",
                                      help="otlp-json, perfetto, html or mermaid."),
    output: Path | None = typer.Option(None, "--output", "-o", metavar="FILE",
                                       help="With --export: write it to FILE."),
    view: str = view_option(),
    as_json: bool = json_option("Print its id and spans as JSON."),
) -> None:
    """Show a stored trace again, or export it.

    \b
    Example: msshop trace last --export mermaid
    """
    from msshop import render
    from msshop.contracts.outcomes import ShownTrace
    from msshop.instruments.traces import export as exports
    from msshop.instruments.traces.store import TraceStore

    check_view(view)
    if output is not None and export is None:
        raise UsageError("--output FILE goes with --export FORMAT")
    if as_json and export is not None:
        raise UsageError("--json prints the spans as msshop keeps them; --export FORMAT "
                         "another format: choose one")
    if export is not None:
        exports.check_format(export)  # before looking for the trace: the first mistake first
    stored = TraceStore.of(settings(ctx).sandbox_dir).load(trace_id)
    if export is None:
        emit(Outcome(ShownTrace(trace_id=stored.trace_id, spans=stored.spans),
                     lambda out: render.trace_views(out, stored.spans, stored.trace_id, view)),
             as_json)
    elif output is None:
        render.text_document(exports.exported(stored, export))
    else:
        try:
            size = exports.write(exports.exported(stored, export), output)
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror}; choose another "
                             "--output") from None
        render.note(render.terminal(), f"wrote {output} ({size:,} bytes, {export})")


def traces(
    ctx: typer.Context,
    user: int | None = typer.Option(None, "--user", min=1, max=MAX_ID,
                                    help="Only this user's."),
    strategy: ReadStrategy | None = typer.Option(
        None, "--strategy", parser=read_strategy_filter, metavar="|".join(ReadStrategy),
        help="Only this strategy's."),
    failed: bool = typer.Option(False, "--failed", help="Only those where a span failed."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=200, help="How many."),
    as_json: bool = json_option("Print them as JSON."),
) -> None:
    """The stored traces, newest first.

    \b
    Example: msshop traces --strategy replicated
    """
    from msshop import render
    from msshop.instruments.traces.store import TraceStore, matching

    found = matching(TraceStore.of(settings(ctx).sandbox_dir).recent(), user, strategy,
                     failed, limit)
    emit(Outcome(found, lambda out: render.trace_list(out, found)),
         as_json)
