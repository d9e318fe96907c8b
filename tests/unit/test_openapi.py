"""Every service's OpenAPI document (GET /openapi.json), in process: the app is made as the
supervisor's child makes it, but not started (the document needs no database); requests go
straight to the ASGI app."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis

from msshop.contracts.credentials import bearer, digest
from msshop.contracts.limits import (
    MAX_BATCH,
    MAX_BODY,
    MAX_EMAIL,
    MAX_EVENT_FIELD,
    MAX_ID,
    MAX_NAME,
    MAX_QUANTITY,
    MAX_REQUEST_ID,
    MAX_SKU,
    MAX_TITLE,
)
from msshop.contracts.topology import SERVICES
from msshop.runtime.platform.app import ServiceApp
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.openapi import refs

TOKEN = "the-sandbox-token"
NAMES = [spec.name for spec in SERVICES]


def make_app(name: str, root: Path) -> ServiceApp:
    spec = next(s for s in SERVICES if s.name == name)
    module, _, function = spec.entry.partition(":")
    ctx = ServiceContext(name, root / spec.db_filename, admin=digest(TOKEN),
                         peer_urls={s.name: "http://127.0.0.1:9" for s in SERVICES})
    app: ServiceApp = getattr(importlib.import_module(module), function)(ctx)
    return app


def call(app: ServiceApp, method: str, target: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """One request to the app (a path, and a query string if any), without a server (and
    without starting the app)."""
    path, _, query = target.partition("?")
    sent: list[dict[str, Any]] = []
    raw = b"" if body is None else json.dumps(body).encode()
    header_list = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    if body is not None:
        header_list.append((b"content-type", b"application/json"))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "", "headers": header_list,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    start = sent[0]
    answer_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    content = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], answer_headers, json.loads(content)


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ServiceApp]:
    root = tmp_path_factory.mktemp("openapi")
    return {name: make_app(name, root) for name in NAMES}


@pytest.fixture(scope="module")
def documents(apps: dict[str, ServiceApp]) -> dict[str, dict[str, Any]]:
    """Each service's document as GET /openapi.json serves it: public, JSON."""
    found = {}
    for name, app in apps.items():
        status, headers, doc = call(app, "GET", "/openapi.json")
        assert status == 200, doc
        assert headers["content-type"] == "application/json"
        found[name] = doc
    return found


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method.upper(), operation


@pytest.mark.parametrize("name", NAMES)
def test_the_document_is_valid_openapi_3_1(documents: dict[str, dict[str, Any]],
                                           name: str) -> None:
    doc = documents[name]
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == f"msshop {name}"
    schemathesis.openapi.from_dict(doc).validate()  # the OpenAPI 3.1 meta-schema


@pytest.mark.parametrize("name", NAMES)
def test_every_route_is_described_and_nothing_else(apps: dict[str, ServiceApp],
                                                   documents: dict[str, dict[str, Any]],
                                                   name: str) -> None:
    served = set(apps[name].router.routes())
    described = {(path, method) for path, method, _ in operations(documents[name])}
    assert described == served
    assert {("/health", "GET"), ("/spans", "GET"), ("/chaos", "POST"),
            ("/openapi.json", "GET")} <= described


@pytest.mark.parametrize("name", NAMES)
def test_every_ref_resolves_and_every_error_is_the_error_shape(
        documents: dict[str, dict[str, Any]], name: str) -> None:
    doc = documents[name]
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rpartition("/")[2] in schemas, ref
    assert set(schemas["Error"]["required"]) == {"error", "status", "service"}
    schemes = doc["components"]["securitySchemes"]
    for path, _, operation in operations(doc):
        for status, response in operation["responses"].items():
            schema = response["content"]["application/json"]["schema"]
            if int(status) >= 400:
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes)
        for param in operation.get("parameters", []):
            if param["in"] == "path":
                assert f"{{{param['name']}}}" in path and param["required"]
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == {part[1:-1] for part in path.split("/") if part.startswith("{")}


def test_who_may_call_is_stated(documents: dict[str, dict[str, Any]]) -> None:
    def security(service: str, path: str, method: str) -> Any:
        return documents[service]["paths"][path][method].get("security")

    owner: list[dict[str, list[str]]] = [{"owner": []}]
    services: list[dict[str, list[str]]] = [{"services": []}]
    for name in NAMES:
        assert security(name, "/spans", "get") == owner
        assert security(name, "/chaos", "post") == owner
        assert security(name, "/health", "get") is None
        assert security(name, "/openapi.json", "get") is None
    assert security("bus", "/events", "post") == services
    assert security("bus", "/events", "get") == owner + services
    for path, method in (("/replay", "post"), ("/dead-letters", "get"), ("/bench/lag", "get")):
        assert security("query", path, method) == owner
    assert security("users", "/users", "post") is None
    for scheme in documents["bus"]["components"]["securitySchemes"].values():
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_the_limits_are_named(documents: dict[str, dict[str, Any]]) -> None:
    def schema(service: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = documents[service]["components"]["schemas"][name]
        return found

    def string(prop: dict[str, Any]) -> dict[str, Any]:  # "str | None": the string's schema
        found: dict[str, Any] = next(
            (s for s in prop.get("anyOf", [prop]) if s.get("type") == "string"), {})
        return found

    product = schema("products", "NewProduct")["properties"]
    assert string(product["sku"])["maxLength"] == MAX_SKU == 64
    assert string(product["title"])["maxLength"] == MAX_TITLE
    signup = schema("users", "SignUp")["properties"]
    assert signup["email"]["maxLength"] == MAX_EMAIL
    assert signup["name"]["maxLength"] == MAX_NAME
    purchase = schema("orders", "Purchase")["properties"]
    assert purchase["quantity"]["maximum"] == MAX_QUANTITY
    assert purchase["user_id"]["maximum"] == MAX_ID
    assert string(purchase["request_id"])["maxLength"] == MAX_REQUEST_ID
    assert schema("orders", "Purchases")["properties"]["orders"]["maxItems"] == MAX_BATCH
    assert schema("bus", "Event")["properties"]["type"]["maxLength"] == MAX_EVENT_FIELD
    append = documents["bus"]["paths"]["/events"]["post"]["requestBody"]
    assert append["content"]["application/json"]["schema"]["maxItems"] == MAX_BATCH
    user = documents["users"]["paths"]["/users/{user_id}"]["get"]["parameters"][0]
    assert user["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    for name in NAMES:  # every body: 413 naming MAX_BODY, 415, 422
        for path, method, operation in operations(documents[name]):
            if "requestBody" in operation:
                responses = operation["responses"]
                assert f"{MAX_BODY:,} bytes" in responses["413"]["description"], path
                assert {"415", "422"} <= set(responses), (method, path)


def test_a_union_of_answers_is_one_of_them(documents: dict[str, dict[str, Any]]) -> None:
    """msgspec cannot describe (nor decode) a union of two TypedDicts; the document says
    "any of" them."""
    page = documents["products"]["paths"]["/products"]["get"]["responses"]["200"]
    assert page["content"]["application/json"]["schema"] == {"anyOf": [
        {"$ref": "#/components/schemas/ProductsFound"},
        {"$ref": "#/components/schemas/ProductPage"}]}
    answer = documents["query"]["components"]["schemas"]["UserOrders"]
    assert answer["properties"]["freshness"] == {"anyOf": [
        {"$ref": "#/components/schemas/LiveFreshness"},
        {"$ref": "#/components/schemas/ReplicaFreshness"}]}
    assert set(answer["required"]) == {"question", "strategy", "user", "orders", "freshness"}


def test_the_document_is_public_untraced_and_never_fails_on_purpose(
        apps: dict[str, ServiceApp]) -> None:
    app = apps["users"]
    status, _, answer = call(app, "POST", "/chaos", {"error_rate": 1}, bearer(TOKEN))
    assert status == 200, answer
    try:
        assert call(app, "GET", "/users/1")[0] == 503  # chaos applies to the routes...
        status, headers, doc = call(app, "GET", "/openapi.json")  # ...not to the document
        assert status == 200 and doc["info"]["title"] == "msshop users"
        assert "x-trace-id" not in headers  # not traced, like /health
    finally:
        call(app, "POST", "/chaos", {"clear": True}, bearer(TOKEN))
