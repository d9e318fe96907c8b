"""The timeline's geometry: each bar starts and ends within one column of its span's real
start and end, in the call tree's order; and what render draws of it fits 80 columns."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from msshop.contracts.spans import Span
from msshop.instruments.traces.timeline import timeline
from msshop.render.traces import timeline as draw

T0 = 1_800_000_000.0


def span(span_id: str, parent: str | None, service: str, start_ms: float, duration_ms: float,
         name: str = "work", **attributes: object) -> Span:
    return {"trace_id": "a" * 32, "span_id": span_id, "parent_id": parent,
            "service": service, "name": name, "kind": "internal",
            "start": T0 + start_ms / 1000, "duration_ms": duration_ms, "status": "ok",
            "attributes": dict(attributes)}


# direct-call's shape: users and orders at once, then products after both
DIRECT_CALL = [
    span("1" * 16, None, "query", 0.0, 10.0, "GET /user-orders/{user_id}"),
    span("2" * 16, "1" * 16, "query", 0.5, 4.0, "GET users", **{"peer.service": "users"}),
    span("3" * 16, "1" * 16, "query", 0.6, 5.5, "GET orders", **{"peer.service": "orders"}),
    span("4" * 16, "2" * 16, "users", 1.0, 2.0, "SELECT users", **{
        "db.system": "sqlite", "db.name": "users.db", "db.operation": "SELECT",
        "msshop.rows": 1}),
    span("5" * 16, "1" * 16, "query", 6.5, 3.0, "GET products",
         **{"peer.service": "products"}),
]


@pytest.mark.parametrize("columns", [10, 37, 60, 200])
def test_each_bar_is_where_its_span_is_within_one_column(columns: int) -> None:
    drawn = timeline(DIRECT_CALL, columns)
    assert drawn.total_ms == pytest.approx(10.0)
    per_column = 10.0 / columns
    for bar in drawn.bars:
        begins = bar.start_ms / per_column
        ends = (bar.start_ms + bar.span["duration_ms"]) / per_column
        assert abs(bar.offset - begins) <= 1, bar
        assert abs(bar.offset + bar.width - ends) <= 1, bar
        assert bar.offset >= 0 and bar.offset + bar.width <= columns and bar.width >= 1


def test_concurrent_calls_overlap_and_sequential_ones_do_not() -> None:
    bars = {b.span["name"]: b for b in timeline(DIRECT_CALL, 100).bars}
    users, orders, products = bars["GET users"], bars["GET orders"], bars["GET products"]
    assert users.offset < orders.offset + orders.width and orders.offset < users.offset + \
        users.width, "users and orders ran at once"
    assert products.offset >= max(users.offset + users.width, orders.offset + orders.width) \
        - 1, "products ran after both"


def test_rows_follow_the_call_tree_with_their_depth() -> None:
    bars = timeline(DIRECT_CALL, 50).bars
    assert [(b.span["name"], b.depth) for b in bars] == [
        ("GET /user-orders/{user_id}", 0), ("GET users", 1), ("SELECT users", 2),
        ("GET orders", 1), ("GET products", 1)]


def test_an_instant_span_still_shows_and_an_empty_trace_is_empty() -> None:
    drawn = timeline([span("1" * 16, None, "query", 0.0, 0.0)], 40)
    assert drawn.bars[0].width == 1 and drawn.bars[0].offset == 0
    assert timeline([], 40).bars == []


def test_drawn_at_80_columns_every_line_fits() -> None:
    buffer = io.StringIO()
    out = Console(file=buffer, width=80, no_color=True, highlight=False)
    draw(out, DIRECT_CALL, "a" * 32)
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].startswith(f"trace {'a' * 32}")
    assert any(line.startswith("  users    users.db SELECT 1 row") for line in lines), lines
    assert lines[-1].strip().startswith("0 ms") and lines[-1].endswith("10.00 ms")
    assert all(line == line.rstrip() for line in lines), "no trailing spaces"
