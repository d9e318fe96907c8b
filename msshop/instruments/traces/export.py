"""What `msshop trace --export FORMAT` writes: a stored trace as OTLP/JSON (for any
OpenTelemetry tool), as Chrome trace-event JSON (for ui.perfetto.dev) or as a Mermaid
sequence diagram."""

from __future__ import annotations

import json

from msshop.contracts.errors import UsageError
from msshop.instruments.traces.store import StoredTrace

FORMATS = ("otlp-json", "perfetto", "mermaid")


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise UsageError(f"unknown export '{name}'; choose one of: " + ", ".join(FORMATS))
    return name


def exported(trace: StoredTrace, name: str) -> str:
    """The trace in that format, as text."""
    if check_format(name) == "otlp-json":
        from msshop.instruments.traces.otlp import to_otlp_json

        return json.dumps(to_otlp_json(trace.spans), indent=2)
    if name == "perfetto":
        from msshop.instruments.traces.perfetto import to_perfetto

        return json.dumps(to_perfetto(trace.spans), indent=1)
    from msshop.instruments.traces.mermaid import to_mermaid

    return to_mermaid(trace.spans)
