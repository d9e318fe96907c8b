"""Traces read back: the tree, the summary, the Mermaid diagram and OTLP/JSON.

The OTLP document is checked against OpenTelemetry's own protobuf definitions.
"""

from __future__ import annotations

import base64
import copy
import json
import math
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan, Status, TracesData

from msshop.contracts.spans import Span
from msshop.instruments.traces import mermaid, otlp as otlp_export, shape as trace_shape

TRACE = "0af7651916cd43dd8448eb211c80319c"
T0 = 1_700_000_000.0
T0_NS = 1_700_000_000 * 10**9


def sid(n: int) -> str:
    return f"{n:016x}"


def span(n: int, parent: int | None, service: str, name: str, kind: str, start_ms: float,
         ms: float, status: str = "ok", **attributes: Any) -> Span:
    return {"trace_id": TRACE, "span_id": sid(n),
            "parent_id": None if parent is None else sid(parent), "service": service,
            "name": name, "kind": kind, "start": T0 + start_ms / 1000, "duration_ms": ms,
            "status": status, "attributes": attributes}


def db(n: int, parent: int, service: str, start_ms: float, ms: float, table: str,
       rows: int, keys: list[int]) -> Span:
    s = span(n, parent, service, f"SELECT {table}", "internal", start_ms, ms)
    s["attributes"] = {"db.system": "sqlite", "db.name": f"/tmp/sb/data/{service}.db",
                       "db.operation": "SELECT", "db.sql.table": table, "msshop.rows": rows,
                       "msshop.keys": keys}
    return s


def call(n: int, parent: int, caller: str, peer: str, name: str, start_ms: float,
         ms: float) -> list[Span]:
    """A client span and the peer's server span under it (starting 1 ms later)."""
    client = span(n, parent, caller, name, "client", start_ms, ms)
    client["attributes"] = {"peer.service": peer, "http.response.status_code": 200}
    server = span(n + 1, n, peer, name, "server", start_ms + 1, ms - 2)
    server["attributes"] = {"http.route": name.split(" ", 1)[1].split("?")[0],
                            "http.response.status_code": 200}
    return [client, server]


def user_orders() -> list[Span]:
    """query asks users and orders at once, then products for what the orders contain."""
    return [
        span(1, None, "query", "user-orders", "server", 0, 20,
             **{"http.route": "/user-orders/{user_id}"}),
        *call(2, 1, "query", "users", "GET /users/{user_id}", 1, 6),
        db(4, 3, "users", 3, 1, "users", 1, [7]),
        *call(5, 1, "query", "orders", "GET /orders?user_id=7", 1.5, 8),
        db(7, 6, "orders", 3.5, 2, "orders", 3, [101, 102, 103]),
        *call(8, 1, "query", "products", "GET /products?ids=1,2", 10, 5),
        db(10, 9, "products", 12, 0.5, "products", 2, [1, 2]),
    ]


def shape(node: trace_shape.Node) -> tuple[str, str, tuple[Any, ...]]:
    return node.span["service"], node.span["name"], tuple(shape(c) for c in node.children)


# --- tree ---------------------------------------------------------------------------------


def test_tree_nests_spans_from_every_service_under_one_root_in_start_order() -> None:
    roots = trace_shape.tree(reversed(user_orders()))
    assert [shape(r) for r in roots] == [
        ("query", "user-orders", (
            ("query", "GET /users/{user_id}", (
                ("users", "GET /users/{user_id}", (("users", "SELECT users", ()),)),)),
            ("query", "GET /orders?user_id=7", (
                ("orders", "GET /orders?user_id=7", (("orders", "SELECT orders", ()),)),)),
            ("query", "GET /products?ids=1,2", (
                ("products", "GET /products?ids=1,2", (("products", "SELECT products", ()),)),)),
        ))]


def test_a_span_whose_parent_is_missing_is_a_root() -> None:
    spans = user_orders()[2:4]  # the users server span and its db span, without the caller
    roots = trace_shape.tree(spans)
    assert [shape(r) for r in roots] == [
        ("users", "GET /users/{user_id}", (("users", "SELECT users", ()),))]


def test_parent_cycles_and_self_parents_do_not_lose_spans() -> None:
    a, b = span(1, 2, "users", "a", "internal", 0, 1), span(2, 1, "users", "b", "internal", 1, 1)
    c = span(3, 3, "users", "c", "internal", 2, 1)
    roots = trace_shape.tree([b, c, a])
    assert [shape(r) for r in roots] == [("users", "a", (("users", "b", ()),)),
                                         ("users", "c", ())]


def test_empty_trace() -> None:
    assert trace_shape.tree([]) == []
    assert trace_shape.summary([]) == {"services": [], "databases": {}, "sequential_hops": 0,
                                  "rows_read": 0, "duration_ms": 0.0}
    assert otlp_export.to_otlp_json([]) == {"resourceSpans": []}
    assert mermaid.to_mermaid([]) == "sequenceDiagram\n"


# --- summary ------------------------------------------------------------------------------


def test_summary_of_user_orders() -> None:
    assert trace_shape.summary(user_orders()) == {
        "services": ["orders", "products", "query", "users"],
        "databases": {"orders": ["/tmp/sb/data/orders.db"],
                      "products": ["/tmp/sb/data/products.db"],
                      "query": [], "users": ["/tmp/sb/data/users.db"]},
        "sequential_hops": 2,  # users and orders at once, then products
        "rows_read": 6,
        "duration_ms": 20.0,
    }


def test_sequential_calls_add_up_and_nested_calls_add_up() -> None:
    one_after_another = [span(1, None, "query", "q", "server", 0, 30),
                         *call(2, 1, "query", "users", "GET /a", 1, 5),
                         *call(4, 1, "query", "users", "GET /b", 6, 5),  # starts as /a ends
                         *call(6, 1, "query", "users", "GET /c", 11, 5)]
    assert trace_shape.summary(one_after_another)["sequential_hops"] == 3
    nested = [span(1, None, "query", "q", "server", 0, 30),
              *call(2, 1, "query", "orders", "GET /orders", 1, 20),
              *call(4, 3, "orders", "users", "GET /users", 3, 5),
              *call(6, 3, "orders", "products", "GET /products", 4, 5)]  # overlaps /users
    assert trace_shape.summary(nested)["sequential_hops"] == 2


def test_summary_with_several_roots_spans_first_start_to_last_end() -> None:
    spans = [span(1, 99, "users", "a", "server", 0, 5), span(2, 98, "orders", "b", "server", 10, 5)]
    assert trace_shape.summary(spans)["duration_ms"] == pytest.approx(15.0, abs=1e-3)


# --- Mermaid ------------------------------------------------------------------------------


def test_mermaid_of_one_call_reads_as_a_sequence() -> None:
    assert mermaid.to_mermaid(user_orders()[:4]) == (
        "sequenceDiagram\n"
        "    participant client as msshop CLI\n"
        "    participant query\n"
        "    participant users\n"
        "    participant users_db as users.db\n"
        "    client->>query: user-orders (20.0 ms)\n"
        "    query->>users: GET /users/{user_id} (6.0 ms)\n"
        "    users->>users_db: SELECT users (1.0 ms)\n"
        "    users_db-->>users: 1 row\n"
        "    users-->>query: 200\n"
        "    query-->>client: ok\n")


def test_mermaid_of_user_orders_shows_concurrent_calls_side_by_side() -> None:
    text = mermaid.to_mermaid(user_orders())
    lines = [line.strip() for line in text.splitlines()]
    assert lines[1:9] == ["participant client as msshop CLI", "participant query",
                          "participant users", "participant users_db as users.db",
                          "participant orders", "participant orders_db as orders.db",
                          "participant products", "participant products_db as products.db"]
    par, et, end = lines.index("par"), lines.index("and"), lines.index("end")
    assert par < lines.index("query->>users: GET /users/{user_id} (6.0 ms)") < et
    assert et < lines.index("orders_db-->>orders: 3 rows") < end
    assert end < lines.index("query->>products: GET /products?ids=1,2 (5.0 ms)")
    assert "products->>products_db: SELECT products (0.50 ms)" in lines
    assert lines[-1] == "query-->>client: ok"


def test_mermaid_escapes_what_would_break_it_and_names_participants_safely() -> None:
    root = span(1, None, "price-list", "GET /a;b #c\nd", "server", 0, 2, "error",
                **{"error.type": "ValueError"})
    client = span(2, 1, "price-list", "call end", "client", 0.5, 1, "error",
                  **{"peer.service": "end", "error.type": "ConnectionRefused"})
    text = mermaid.to_mermaid([root, client])
    assert text == (
        "sequenceDiagram\n"
        "    participant client as msshop CLI\n"
        "    participant price_list as price-list\n"
        "    participant _end as end\n"
        "    client->>price_list: GET /a#59;b #35;c d (2.0 ms)\n"
        "    price_list->>_end: call end (1.0 ms)\n"
        "    _end--xprice_list: error ConnectionRefused\n"
        "    price_list-->>client: error ValueError\n")


def test_a_service_called_client_does_not_clash_with_the_cli() -> None:
    text = mermaid.to_mermaid([span(1, None, "client", "run", "server", 0, 1)])
    assert "participant client as msshop CLI\n    participant client_2 as client\n" in text
    assert "client->>client_2: run (1.0 ms)" in text


# --- OTLP/JSON ----------------------------------------------------------------------------


def as_protobuf_json(doc: dict[str, Any]) -> dict[str, Any]:
    """OTLP/JSON ids are hex; protobuf's JSON mapping wants base64 for bytes (as collectors do)."""
    doc = copy.deepcopy(doc)
    for resource_spans in doc["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for s in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in s:
                        s[key] = base64.b64encode(bytes.fromhex(s[key])).decode()
    return doc


def parse(doc: dict[str, Any]) -> TracesData:
    json.dumps(doc, allow_nan=False)  # plain JSON, nothing Python-only
    parsed: TracesData = json_format.ParseDict(as_protobuf_json(doc), TracesData())
    return parsed


def test_otlp_json_parses_with_opentelemetry_proto_and_round_trips() -> None:
    spans = [*user_orders(), span(11, 1, "query", "merge", "internal", 16, 1.25, "error",
                                  **{"error.type": "KeyError", "msshop.stale_s": 0.25,
                                     "msshop.cached": False, "msshop.note": None})]
    doc = otlp_export.to_otlp_json(spans)
    data = parse(doc)
    assert json_format.MessageToDict(data, use_integers_for_enums=True) == as_protobuf_json(doc)

    assert [r.resource.attributes[0].value.string_value for r in data.resource_spans] == [
        "orders", "products", "query", "users"]
    parsed = {}
    for resource_spans in data.resource_spans:
        assert [s.scope.name for s in resource_spans.scope_spans] == ["msshop"]
        for s in resource_spans.scope_spans[0].spans:
            parsed[s.span_id] = s
    assert len(parsed) == len(spans)
    for original in spans:
        s = parsed[bytes.fromhex(original["span_id"])]
        assert s.trace_id == bytes.fromhex(TRACE)
        assert s.parent_span_id == bytes.fromhex(original["parent_id"] or "")
        assert s.name == original["name"]
        assert abs(s.start_time_unix_nano - T0_NS - (original["start"] - T0) * 1e9) < 1000
        assert s.end_time_unix_nano - s.start_time_unix_nano == original["duration_ms"] * 1e6

    kinds = {sid: s.kind for sid, s in parsed.items()}
    assert kinds[bytes.fromhex(sid(1))] == PbSpan.SPAN_KIND_SERVER
    assert kinds[bytes.fromhex(sid(2))] == PbSpan.SPAN_KIND_CLIENT
    assert kinds[bytes.fromhex(sid(4))] == PbSpan.SPAN_KIND_INTERNAL

    db_attributes = {a.key: a.value for a in parsed[bytes.fromhex(sid(7))].attributes}
    assert db_attributes["db.name"].string_value == "/tmp/sb/data/orders.db"
    assert db_attributes["msshop.rows"].int_value == 3
    assert [v.int_value for v in db_attributes["msshop.keys"].array_value.values] == [
        101, 102, 103]

    merge = parsed[bytes.fromhex(sid(11))]
    attributes = {a.key: a.value for a in merge.attributes}
    assert "msshop.note" not in attributes  # None is skipped
    assert attributes["msshop.stale_s"].double_value == 0.25
    assert attributes["msshop.cached"].WhichOneof("value") == "bool_value"
    assert attributes["msshop.cached"].bool_value is False
    assert merge.status.code == Status.STATUS_CODE_ERROR
    assert merge.status.message == "KeyError"
    assert parsed[bytes.fromhex(sid(1))].status.code == Status.STATUS_CODE_OK


def test_otlp_root_has_no_parent_and_a_missing_parent_is_kept() -> None:
    orphan = span(2, 99, "users", "GET /users", "server", 0, 1)
    doc = otlp_export.to_otlp_json([span(1, None, "query", "q", "server", 0, 1), orphan])
    otlp = {s["spanId"]: s for r in doc["resourceSpans"] for s in r["scopeSpans"][0]["spans"]}
    assert "parentSpanId" not in otlp[sid(1)]
    assert otlp[sid(2)]["parentSpanId"] == sid(99)
    assert otlp[sid(1)]["status"] == {"code": 1}
    parse(doc)


@pytest.mark.parametrize(("kind", "number"), [
    ("internal", PbSpan.SPAN_KIND_INTERNAL), ("server", PbSpan.SPAN_KIND_SERVER),
    ("client", PbSpan.SPAN_KIND_CLIENT), ("producer", PbSpan.SPAN_KIND_PRODUCER),
    ("consumer", PbSpan.SPAN_KIND_CONSUMER)])
def test_otlp_kinds(kind: str, number: int) -> None:
    doc = otlp_export.to_otlp_json([span(1, None, "users", "x", kind, 0, 1)])
    assert doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["kind"] == number
    assert parse(doc).resource_spans[0].scope_spans[0].spans[0].kind == number


def test_otlp_attribute_values_of_every_shape() -> None:
    attributes: dict[str, Any] = {
        "none": None, "nested": {"a": [1, {"b": 2}]}, "list_of_lists": [[1], [2]],
        "mixed": ["a", 1, 2.5, None], "huge": 2**70, "nan": math.nan, "inf": -math.inf,
        "empty": [], "tuple": (1, 2)}
    doc = otlp_export.to_otlp_json([span(1, None, "users", "x", "internal", 0, 1, **attributes)])
    values = {a["key"]: a["value"]
              for a in doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"]}
    assert values == {
        "nested": {"stringValue": '{"a": [1, {"b": 2}]}'},
        "list_of_lists": {"stringValue": "[[1], [2]]"},
        "mixed": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "1"},
                                            {"doubleValue": 2.5}, {}]}},
        "huge": {"stringValue": str(2**70)},
        "nan": {"doubleValue": "NaN"},
        "inf": {"doubleValue": "-Infinity"},
        "empty": {"arrayValue": {"values": []}},
        "tuple": {"arrayValue": {"values": [{"intValue": "1"}, {"intValue": "2"}]}},
    }
    parsed = parse(doc).resource_spans[0].scope_spans[0].spans[0]
    by_key = {a.key: a.value for a in parsed.attributes}
    assert math.isnan(by_key["nan"].double_value)
    assert by_key["inf"].double_value == -math.inf


# --- perfetto (Chrome trace-event JSON) ------------------------------------------------------

PHASES = {"X", "M", "s", "f"}


def test_perfetto_has_the_documented_shape_a_track_per_service_and_a_flow_per_call() -> None:
    from msshop.instruments.traces.perfetto import to_perfetto

    spans = user_orders()
    document = json.loads(json.dumps(to_perfetto(spans)))  # plain JSON all the way
    events = document["traceEvents"]
    assert document["displayTimeUnit"] == "ms" and document["otherData"]["trace_id"] == TRACE
    assert {e["ph"] for e in events} <= PHASES
    names = {e["pid"]: e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "process_name"}
    assert sorted(names.values()) == ["orders", "products", "query", "users"]
    slices = [e for e in events if e["ph"] == "X"]
    assert len(slices) == len(spans)
    for e in slices:  # each complete event: a name, a track, a start and a duration in µs
        assert isinstance(e["name"], str) and e["pid"] in names and e["tid"] >= 1
        assert e["ts"] >= 0 and e["dur"] >= 0
    by_span = {e["args"]["span_id"]: e for e in slices}
    assert by_span[sid(1)]["ts"] == 0 and by_span[sid(1)]["dur"] == 20_000
    assert by_span[sid(5)]["ts"] == pytest.approx(1_500, abs=1)
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    assert starts.keys() == ends.keys() and len(starts) == 3, "a flow per call to a service"
    for flow, begin in starts.items():
        assert names[begin["pid"]] == "query" and ends[flow]["bp"] == "e"
        assert names[ends[flow]["pid"]] in ("users", "orders", "products")


def test_perfetto_puts_overlapping_spans_of_a_service_on_lanes_that_nest() -> None:
    from msshop.instruments.traces.perfetto import to_perfetto

    slices = [e for e in to_perfetto(user_orders())["traceEvents"] if e["ph"] == "X"]
    query = {e["args"]["span_id"]: e for e in slices if e["pid"] == slices[0]["pid"]}
    users_call, orders_call = query[sid(2)], query[sid(5)]
    assert users_call["tid"] != orders_call["tid"], "made at once: not one in the other"
    for lane in {e["tid"] for e in query.values()}:
        on_lane = sorted((e for e in query.values() if e["tid"] == lane),
                         key=lambda e: (e["ts"], -e["dur"]))
        stack: list[float] = []
        for e in on_lane:
            while stack and stack[-1] <= e["ts"]:
                stack.pop()
            assert not stack or e["ts"] + e["dur"] <= stack[-1], "slices on a lane nest"
            stack.append(e["ts"] + e["dur"])
    assert to_perfetto([])["traceEvents"] == []


# --- the page for the browser -----------------------------------------------------------------


def test_the_html_page_is_self_contained_and_data_cannot_break_out_of_it() -> None:
    from msshop.instruments.traces.html import to_html

    spans = user_orders()
    spans[0]["name"] = "</script><script>alert('x')</script>\u2028"
    page = to_html(spans, TRACE, "user-orders for user 7 by direct-call")
    assert page.startswith("<!doctype html>") and page.count("</script>") == 1
    assert "<script src" not in page and "<link" not in page
    assert "http://" not in page and "https://" not in page, "nothing fetched"
    assert f"<title>msshop trace {TRACE}</title>" in page
    data = page[page.index("const TRACE = ") + len("const TRACE = "):].split(";\n", 1)[0]
    assert json.loads(data)["spans"][0]["name"].startswith("</script>"), "the name survives"


def test_perfetto_draws_the_events_hop_from_its_publish_to_its_apply() -> None:
    from msshop.instruments.traces.perfetto import to_perfetto

    write = [span(1, None, "orders", "POST /orders", "server", 0, 3),
             span(2, 1, "orders", "publish OrderPlaced", "producer", 3.5, 1),
             span(3, 1, "query", "apply OrderPlaced", "consumer", 5, 0.1)]
    write[1]["attributes"] = {"msshop.position": 81}
    write[2]["attributes"] = {"msshop.position": 81, "msshop.lag_ms": 2.0}
    events = to_perfetto(write)["traceEvents"]
    hop = [e for e in events if e.get("cat") == "event"]
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert [(e["ph"], names[e["pid"]]) for e in hop] == [("s", "orders"), ("f", "query")]
    assert hop[0]["id"] == hop[1]["id"] and hop[0]["ts"] < hop[1]["ts"]
