"""What the dashboard says of a part and of an answer, in process: the faults injected, in
the page's words (gather.py), and the files an answer touched (ask.py). Against the real
process: tests/e2e/test_dashboard.py, test_dashboard_ask.py."""

from __future__ import annotations

import pytest

from msshop.contracts.spans import make_span
from msshop.runtime.services.dashboard.ask import asked_strategies, asked_user, touched
from msshop.runtime.services.dashboard.gather import described, view
from msshop.runtime.services.dashboard.guard import Refused


def test_faults_are_said_as_the_page_says_them() -> None:
    assert described({"latency_ms": 300, "jitter_ms": 0, "error_rate": 0}) == ["+300 ms"]
    assert described({"latency_ms": 0, "jitter_ms": 50, "error_rate": 0.5}) == [
        "+0 ms (±50)", "fails 50%"]
    assert described({"latency_ms": 0, "error_rate": 1.0}) == ["partitioned"]
    assert described({"duplicate_rate": 0.3, "reorder_rate": 0.1}) == [
        "duplicates 30%", "reorders 10%"]
    assert described({}) == []


def test_a_part_s_health_becomes_its_view() -> None:
    health = {"status": "ok", "pid": 7, "rows": {"orders": 3},
              "chaos": {"latency_ms": 300, "jitter_ms": 0, "error_rate": 0,
                        "links": {"users": {"latency_ms": 0, "jitter_ms": 0,
                                            "error_rate": 1, "duplicate_rate": 0}}}}
    part = view("query", health)
    assert part.faults == ["+300 ms"] and part.links == {"users": "partitioned"}
    assert view("query", {"status": "ok", "chaos": None}).faults == []
    assert view("query", None, "not running").state == "down"


def test_the_files_an_answer_touched_are_its_sql_spans() -> None:
    spans = [make_span("query", "GET /user-orders/{user_id}", "server"),
             make_span("users", "SELECT users", "internal",
                       {"db.system": "sqlite", "db.name": "users.db"}),
             make_span("cli", "join", "internal",
                       {"db.system": "sqlite", "db.name": "orders.db, products.db"})]
    assert touched(spans) == ["orders.db", "products.db", "users.db"]
    assert touched(spans[:1]) == []


@pytest.mark.parametrize("raw", [None, "", "abc", "0", "-3", "1.5", str(2**60)])
def test_a_user_id_is_a_whole_number_from_1(raw: str | None) -> None:
    with pytest.raises(Refused) as refused:
        asked_user(raw)
    assert refused.value.status == 422


def test_compare_asks_both_served_strategies() -> None:
    assert [str(s) for s in asked_strategies("compare")] == ["direct-call", "replicated"]
    assert [str(s) for s in asked_strategies("replicated")] == ["replicated"]
    with pytest.raises(Refused):
        asked_strategies("monolith")


def test_a_look_s_point_of_history_is_the_outboxes_and_the_read_model_s_distance() -> None:
    from msshop.runtime.services.dashboard.gather import PartView, Snapshot, replication

    look = Snapshot(12.5, [PartView("users", "up", outbox=3), PartView("orders", "up",
                                                                        outbox=4),
                           PartView("query", "up", behind=9), PartView("bus", "down")])
    assert replication(look) == (12.5, 7, 9)
    assert replication(Snapshot(1.0, [PartView("query", "down")])) == (1.0, 0, 0)
