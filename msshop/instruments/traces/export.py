"""What `msshop trace --export FORMAT` writes: a stored trace as OTLP/JSON (for any
OpenTelemetry tool), as Chrome trace-event JSON (for ui.perfetto.dev), as one
self-contained HTML page (for a browser, offline) or as a Mermaid sequence diagram."""

from __future__ import annotations

import json
from pathlib import Path

from msshop.contracts.errors import UsageError
from msshop.instruments.traces.store import StoredTrace

FORMATS = ("otlp-json", "perfetto", "html", "mermaid")


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise UsageError(f"unknown export '{name}'; choose one of: " + ", ".join(FORMATS))
    return name


def write(text: str, path: Path) -> int:
    """An export into a file; how many bytes (OSError: it cannot be written there)."""
    return path.write_bytes(text.encode())


def exported(trace: StoredTrace, name: str) -> str:
    """The trace in that format, as text."""
    if check_format(name) == "otlp-json":
        from msshop.instruments.traces.otlp import to_otlp_json

        return json.dumps(to_otlp_json(trace.spans), indent=2)
    if name == "html":
        from msshop.instruments.traces.html import to_html

        strategy = f"{trace.strategy} ({trace.fanout})" if trace.fanout else trace.strategy
        return to_html(trace.spans, trace.trace_id,
                       f"{trace.question} for user {trace.user_id} by {strategy}")
    if name == "perfetto":
        from msshop.instruments.traces.perfetto import to_perfetto

        return json.dumps(to_perfetto(trace.spans), indent=1)
    from msshop.instruments.traces.mermaid import to_mermaid

    return to_mermaid(trace.spans)
