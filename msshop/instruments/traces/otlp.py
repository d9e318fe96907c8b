"""A trace as an OTLP/JSON `TracesData` document (opentelemetry-proto trace/v1) that an
OpenTelemetry collector, Jaeger, Tempo or Aspire can import."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from msshop.contracts.spans import Span
from msshop.instruments.traces.shape import attrs, start

_KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUS_CODES = {"ok": 1, "error": 2}
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def to_otlp_json(spans: Iterable[Span]) -> dict[str, Any]:
    """An OTLP/JSON `TracesData` document: one resourceSpans per service, ids in hex."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    for s in sorted(spans, key=start):
        by_service.setdefault(str(s["service"]), []).append(_otlp_span(s))
    return {"resourceSpans": [
        {"resource": {"attributes": [_key_value("service.name", service)]},
         "scopeSpans": [{"scope": {"name": "msshop"}, "spans": otlp_spans}]}
        for service, otlp_spans in sorted(by_service.items())]}


def _otlp_span(s: Span) -> dict[str, Any]:
    attributes = attrs(s)
    start_ns = round(start(s) * 1e6) * 1000  # a float of unix seconds holds about 0.2 µs
    status: dict[str, Any] = {"code": _STATUS_CODES.get(s.get("status", "ok"), 0)}
    if status["code"] == 2 and attributes.get("error.type") is not None:
        status["message"] = str(attributes["error.type"])
    parent = {"parentSpanId": s["parent_id"]} if s.get("parent_id") else {}
    return {"traceId": s["trace_id"], "spanId": s["span_id"], **parent, "name": str(s["name"]),
            "kind": _KINDS.get(str(s.get("kind", "internal")).lower(), 0),
            "startTimeUnixNano": str(start_ns),
            "endTimeUnixNano": str(start_ns + round(float(s["duration_ms"]) * 1e6)),
            "attributes": [_key_value(k, v) for k, v in attributes.items() if v is not None],
            "status": status}


def _key_value(key: Any, value: Any) -> dict[str, Any]:
    return {"key": str(key), "value": _any_value(value)}


def _any_value(value: Any) -> dict[str, Any]:
    """An OTLP AnyValue; None (kept only inside arrays) is the empty AnyValue."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value if math.isfinite(value) else _NON_FINITE[repr(value)]}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list | tuple) and all(
            v is None or isinstance(v, str | int | float) for v in value):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    try:  # nested lists or dicts, ints beyond int64, anything else: a JSON string
        return {"stringValue": json.dumps(value, default=str)}
    except (TypeError, ValueError):
        return {"stringValue": str(value)}
