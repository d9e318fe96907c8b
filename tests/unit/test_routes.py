"""One declaration per route: what an `Endpoint` declares is what the router enforces
before its handler runs (parameters converted and range-checked, the credential), and the
flags the middlewares read (traced, subject to chaos). In process, straight to the ASGI
app, without starting it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import pytest
from starlette.requests import Request
from starlette.responses import Response

from msshop.contracts.credentials import bearer, digest, service_credential
from msshop.contracts.limits import MAX_BATCH, MAX_ID
from msshop.contracts.strategies import SERVED, ReadStrategy
from msshop.runtime.platform.app import ServiceApp, service_app
from msshop.runtime.platform.http import OWNER, json_response, read_body
from msshop.runtime.platform.openapi import Endpoint, Param, id_list, path_id
from msshop.runtime.services.orders import Purchases
from tests.unit.test_openapi import call as request

TOKEN = "the-sandbox-token"
USERS = service_credential(TOKEN, "users")
Limit = Annotated[int, msgspec.Meta(ge=1, le=100)]

#: what the handlers received, in order
received: list[dict[str, Any]] = []


async def one(request: Request, item_id: int, strategy: ReadStrategy, fanout: str,
              limit: int, kept: bool, partial: bool) -> Response:
    received.append({"item_id": item_id, "strategy": strategy, "fanout": fanout,
                     "limit": limit, "kept": kept, "partial": partial})
    return json_response({"ok": True})


async def many(request: Request, ids: list[int]) -> Response:
    received.append({"ids": ids})
    return json_response({"ok": True})


async def secret(request: Request, caller: str) -> Response:
    received.append({"caller": caller})
    return json_response({"ok": True})


async def quiet(request: Request) -> Response:
    received.append({"quiet": True})
    return json_response({"ok": True})


ENDPOINTS = [
    Endpoint("GET", "/items/{item_id}", one, "One item", {200: (dict[str, Any], "it")},
             params=[path_id("item_id", "item"),
                     Param("strategy", Literal[SERVED], "how", default=ReadStrategy.REPLICATED),
                     Param("fanout", Literal["batched", "naive"], "fan", default="batched"),
                     Param("limit", Limit, "at most", default=10),
                     Param("kept", bool, "kept", default=True),
                     Param("partial", bool, "partial", default=False)]),
    Endpoint("GET", "/items", many, "Items", {200: (dict[str, Any], "them")},
             params=[id_list("item", missing="list items by id: GET /items?ids=1,2")]),
    Endpoint("GET", "/secret", secret, "A secret", {200: (dict[str, Any], "it")},
             auth="owner or services", action="reading the secret"),
    Endpoint("GET", "/owner-only", secret, "The owner's", {200: (dict[str, Any], "it")},
             auth="owner", action="reading the owner's"),
    Endpoint("GET", "/quiet", quiet, "Neither traced nor failed on purpose",
             {200: (dict[str, Any], "it")}, chaos=False, traced=False),
]


@pytest.fixture(scope="module")
def app() -> ServiceApp:
    return service_app("items", ENDPOINTS, dict, admin=digest(TOKEN),
                       senders={digest(USERS): "users"})


def call(app: ServiceApp, method: str, target: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """One request to the app, without a server; `received` says what the handler got."""
    received.clear()
    return request(app, method, target, body, headers)


def refused(app: ServiceApp, target: str, headers: dict[str, str] | None = None
            ) -> tuple[int, str]:
    status, _, answer = call(app, "GET", target, headers=headers)
    assert not received, "the handler never runs for a refused request"
    return status, answer["error"]


def test_the_handler_receives_typed_values_and_defaults(app: ServiceApp) -> None:
    assert call(app, "GET", "/items/7")[0] == 200
    assert received == [{"item_id": 7, "strategy": ReadStrategy.REPLICATED,
                         "fanout": "batched", "limit": 10, "kept": True, "partial": False}]
    assert call(app, "GET", "/items/7?strategy=direct-call&fanout=naive&limit=100&kept=0"
                            "&partial=true&unknown=x")[0] == 200
    assert received == [{"item_id": 7, "strategy": ReadStrategy.DIRECT_CALL,
                         "fanout": "naive", "limit": 100, "kept": False, "partial": True}]
    assert received[0]["strategy"] is ReadStrategy.DIRECT_CALL
    call(app, "GET", "/items/7?strategy=&fanout=")  # left empty: the default
    assert (received[0]["strategy"], received[0]["fanout"]) == ("replicated", "batched")
    call(app, "GET", "/items/7?limit=%32%30")  # escaped: the full parse
    assert received[0]["limit"] == 20


@pytest.mark.parametrize(("target", "status", "error"), [
    ("/items/abc", 422, "item_id 'abc' is not an id: ids are positive integers"),
    ("/items/0", 422, "item_id '0' is not an id: ids are positive integers"),
    (f"/items/{MAX_ID + 1}", 422,
     f"item_id '{MAX_ID + 1}' is not an id: ids are at most {MAX_ID}"),
    ("/items/1\n2", 422, "item_id '1\\n2' is not an id: ids are positive integers"),
    ("/items/1/2", 404, "items has no route GET /items/1/2"),
    ("/items/1?limit=0", 422, "query parameter limit='0' must be an integer from 1 to 100"),
    ("/items/1?limit=101", 422,
     "query parameter limit='101' must be an integer from 1 to 100"),
    ("/items/1?limit=x", 422, "query parameter limit='x' must be an integer from 1 to 100"),
    ("/items/1?strategy=monolith", 422,
     "strategy 'monolith' is not one of: direct-call, replicated"),
    ("/items/1?fanout=wide", 422, "fanout 'wide' is not one of: batched, naive"),
    ("/items", 422, "list items by id: GET /items?ids=1,2"),
    ("/items?ids=1,x", 422, "ids entry 'x' is not an id: ids are positive integers"),
    ("/items?ids=1,0", 422, "ids entry '0' is not an id: ids are positive integers"),
    (f"/items?ids=1,{MAX_ID + 1}", 422,
     f"ids entry '{MAX_ID + 1}' is not an id: ids are at most {MAX_ID}"),
    ("/items?ids=" + ",".join(["1"] * (MAX_BATCH + 1)), 422,
     f"query parameter ids has {MAX_BATCH + 1} ids; ask for at most {MAX_BATCH} at a time"),
])
def test_a_bad_value_is_refused_before_the_handler_runs(app: ServiceApp, target: str,
                                                        status: int, error: str) -> None:
    assert refused(app, target) == (status, error)


def test_an_id_list_is_distinct_ids_in_the_order_given(app: ServiceApp) -> None:
    for target, ids in (("/items?ids=3,1,3,2", [3, 1, 2]), ("/items?ids=", []),
                        ("/items?ids=4,,5,", [4, 5]), ("/items?ids=%206,7", [6, 7]),
                        ("/items?ids=" + ",".join(["1"] * MAX_BATCH), [1])):
        assert call(app, "GET", target)[0] == 200, target
        assert received == [{"ids": ids}], target


def test_the_credential_is_checked_before_the_handler_runs(app: ServiceApp) -> None:
    assert refused(app, "/secret") == (
        401, "reading the secret needs the sandbox's token: send 'authorization: Bearer "
             "<token from state.json>', or use the msshop command")
    assert refused(app, "/secret", bearer("another")) == (
        403, "reading the secret refused: that is not this sandbox's token")
    assert refused(app, "/owner-only", bearer(USERS)) == (
        403, "reading the owner's refused: that is not this sandbox's token")
    assert call(app, "GET", "/secret", headers=bearer(TOKEN))[0] == 200
    assert received == [{"caller": OWNER}]
    assert call(app, "GET", "/secret", headers=bearer(USERS))[0] == 200
    assert received == [{"caller": "users"}], "the handler knows which service called"


def test_chaos_and_tracing_follow_the_route_declaration(app: ServiceApp) -> None:
    status, headers, _ = call(app, "GET", "/items/1")
    assert status == 200 and "x-trace-id" in headers
    status, headers, _ = call(app, "GET", "/quiet")
    assert status == 200 and "x-trace-id" not in headers
    assert call(app, "GET", "/nowhere")[1].get("x-trace-id"), "a 404 is traced too"
    status, _, answer = call(app, "POST", "/chaos", {"error_rate": 1}, bearer(TOKEN))
    assert status == 200, answer
    try:
        assert call(app, "GET", "/items/1")[0] == 503
        assert call(app, "GET", "/nowhere")[0] == 503
        assert call(app, "GET", "/quiet")[0] == 200
        assert received == [{"quiet": True}]
    finally:
        call(app, "POST", "/chaos", {"clear": True}, bearer(TOKEN))


def test_a_route_and_its_handler_cannot_disagree() -> None:
    async def takes_other(request: Request, other: int) -> Response:
        return json_response(None)

    async def takes_caller(request: Request, caller: str) -> Response:
        return json_response(None)

    def made(*endpoints: Endpoint) -> ServiceApp:
        return service_app("items", list(endpoints), dict)

    with pytest.raises(ValueError, match="the handler takes"):
        made(Endpoint("GET", "/x/{item_id}", takes_other, "x", {},
                      params=[path_id("item_id", "item")]))
    with pytest.raises(ValueError, match="requires no credential"):
        made(Endpoint("GET", "/x", takes_caller, "x", {}))
    with pytest.raises(ValueError, match="says what it allows"):
        made(Endpoint("GET", "/x", takes_caller, "x", {}, auth="owner"))
    with pytest.raises(TypeError, match="no converter"):
        made(Endpoint("GET", "/x", takes_other, "x", {},
                      params=[Param("other", list[int], "a list")]))
    with pytest.raises(TypeError, match="only ids"):
        made(Endpoint("GET", "/x/{other}", takes_other, "x", {},
                      params=[Param("other", Limit, "a number", "path", required=True)]))


@pytest.mark.parametrize(("body", "error"), [
    ({"orders": [{"user_id": 1, "product_id": 1}, {"user_id": 0, "product_id": 1}]},
     "orders[1]: user_id 0 is not an id: ids are positive integers"),
    ({"orders": [{"user_id": 1, "product_id": MAX_ID + 1}]},
     f"orders[0]: product_id {MAX_ID + 1} is not an id: ids are at most {MAX_ID}"),
    ({"orders": [{"user_id": 1, "product_id": 1, "quantity": 1001}]},
     "orders[0]: quantity 1001 must be from 1 to 1000"),
    ({"orders": [{"user_id": 1, "product_id": 1, "request_id": ""}]},
     "orders[0]: request_id must be 1 to 100 characters"),
    ({"orders": []}, "invalid request body: Expected `array` of length >= 1 - at `$.orders`"),
    ({"orders": [{"user_id": "1", "product_id": 1}]},
     "invalid request body: Expected `int`, got `str` - at `$.orders[0].user_id`"),
])
def test_a_body_beyond_its_declared_limit_names_the_value_and_the_limit(
        body: Any, error: str) -> None:
    async def post_batch(request: Request) -> Response:
        return json_response(await read_body(request, Purchases))

    app = service_app("orders", [Endpoint("POST", "/batch", post_batch, "A batch", {},
                                          body=Purchases)], dict)
    status, _, answer = call(app, "POST", "/batch", body)
    assert (status, answer["error"]) == (422, error)
