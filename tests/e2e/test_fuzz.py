"""Issue 9: every service fuzzed from its own OpenAPI document (GET /openapi.json) with
schemathesis, in a real sandbox with a little data.

Every operation gets bounded examples, derandomized (the same cases on every run), of valid
data and of invalid data, with the owner's token (and, to append to the bus, the users
service's credential), so the fuzzing gets past authentication. Every answer must be: not a
5xx (but for the ones the design gives, BY_DESIGN); for an error, one line of JSON in the
Error shape; what the document says (a documented status, its content type, its schema).
The cases that found bugs are kept as REGRESSIONS, run through the same checks. Afterwards
the replicated read model still equals the monolith (`msshop verify`).

Waits the document allows (a long-poll up to 30 s, read-your-writes waits) are cut short,
and faults set through POST /chaos are cleared at once: the fuzzing is about what the
services answer, not how long they may be told to wait.

A deeper run, random instead of the same cases: FUZZ_EXAMPLES=300 FUZZ_RANDOM=1
pytest tests/e2e/test_fuzz.py -s
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import APIOperation, Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from msshop.contracts.credentials import bearer
from msshop.contracts.topology import NAMES
from tests.conftest import Sandbox

AnyCase = Case[Any]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))  # per operation, per kind of data
RANDOM = bool(os.environ.get("FUZZ_RANDOM"))
LONGEST_WAIT_MS = 50  # long-polls and read-your-writes waits, cut to this
LONGEST_FAULT_MS = 20  # latency and jitter set through POST /chaos, cut to this
#: what the fuzzing ran, by service: (operations, cases, seconds), printed at the end (-s)
RAN: dict[str, tuple[int, int, float]] = {}

#: 5xx answers that are the design, not a failure, and what their message says: a
#: read-your-writes wait for a bus position not applied in time (the fuzzer asks for
#: positions far beyond the head)
BY_DESIGN = {("GET", "/user-orders/{user_id}", 503): "has not applied bus position"}

#: what the fuzzer found, kept: (service, method, path template, the case's parts, status)
REGRESSIONS: list[tuple[str, str, str, dict[str, Any], int]] = [
    # a NUL in an email: json_each (the batch's lookup of known emails) ended it there,
    # the new user's id was not found again: KeyError, 500
    ("users", "POST", "/users/batch",
     {"body": {"users": [{"email": "nul\u0000x@example.com", "name": "Nul"}]}}, 422),
    # the same in a batch of orders' request ids: the known key was missed, the insert
    # broke the UNIQUE constraint: IntegrityError, 500
    ("orders", "POST", "/orders/batch",
     {"body": {"orders": [{"user_id": 1, "product_id": 1, "request_id": "nul\u0000x"}]}},
     422),
    # and in the bus's repeat path (a relay whose answer was lost sends again): KeyError
    ("bus", "POST", "/events",
     {"body": [{"id": "fuzz\u0000nul", "type": "FuzzProbe", "source": "users",
                "aggregate_type": "probe", "aggregate_id": 1, "aggregate_version": 1,
                "occurred_at": 1.0, "data": {}}] * 2}, 200),
    # a control character the caller sent, quoted in an error message: not one line
    ("users", "GET", "/users/{user_id}", {"path_parameters": {"user_id": "1\n2"}}, 422),
    # a price near the float's limit: round(price * 100) overflowed before the range check
    ("products", "POST", "/products", {"body": {"title": "Huge", "price": 1e307}}, 422),
]


@pytest.fixture(scope="module")
def shop(shared_sandbox: Sandbox) -> Iterator[Sandbox]:
    shared_sandbox.run("seed", "--users", "20", "--products", "10", "--orders", "50",
                       check=True)
    yield shared_sandbox
    for name, (operations, cases, seconds) in RAN.items():
        print(f"fuzzed {name}: {operations} operations, {cases} cases, {seconds:.1f} s")


def no_server_error(ctx: CheckContext, response: Response, case: AnyCase) -> bool | None:
    """No 5xx, but for the ones the design gives (BY_DESIGN); never a 500."""
    said = BY_DESIGN.get((case.method.upper(), case.path, response.status_code))
    if said is not None and said in response.text:
        return None
    return not_a_server_error(ctx, response, case)


def error_is_one_line_of_json(ctx: CheckContext, response: Response, case: AnyCase
                              ) -> bool | None:
    """Every 4xx/5xx answer is JSON: {"error": "<one line>", "status": N, "service"}."""
    if response.status_code < 400:
        return None
    kind = response.headers.get("content-type", [""])[0]
    assert kind.startswith("application/json"), f"an error answered as {kind!r}"
    body = response.json()
    assert isinstance(body, dict), f"an error answered {body!r}"
    message = body.get("error")
    assert isinstance(message, str) and message.strip(), f"an error without a message: {body}"
    assert len(message.splitlines()) == 1, f"an error message of many lines: {message!r}"
    assert body.get("status") == response.status_code, body
    return None


CHECKS = [no_server_error, error_is_one_line_of_json, status_code_conformance,
          content_type_conformance, response_schema_conformance]


def tamed(case: AnyCase) -> None:
    """Cut the waits the document allows and the faults chaos may inject; make the events
    a service appends its own (else every append is a 403 for another source)."""
    query = case.query
    if isinstance(query, dict):
        for name in ("wait_ms", "wait_published_ms"):
            value = query.get(name)
            if isinstance(value, int) and value > LONGEST_WAIT_MS:
                query[name] = LONGEST_WAIT_MS
        if case.path == "/user-orders/{user_id}" and "after" in query \
                and "wait_ms" not in query:
            query["wait_ms"] = LONGEST_WAIT_MS  # its default is 2 s
    if case.path == "/chaos" and isinstance(case.body, dict):
        for name in ("latency_ms", "jitter_ms"):
            value = case.body.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) \
                    and value > LONGEST_FAULT_MS:
                case.body[name] = LONGEST_FAULT_MS
    if case.path == "/events" and isinstance(case.body, list):
        for event in case.body:
            if isinstance(event, dict) and "source" in event:
                event["source"] = "users"  # random types: dead letters, never a user


class Caller:
    """Sends a service's cases with a credential that gets past the door (the owner's token;
    for POST /events, the users service's credential: only the services that record events
    append; for the ledgers' takes and give-backs, orders': only its purchases take),
    checks the answers, and clears any fault a case set."""

    def __init__(self, sandbox: Sandbox, name: str) -> None:
        self.base = sandbox.state.services[name].url
        self.owner = bearer(sandbox.state.token)
        self.publisher = sandbox.as_service("users")
        self.buyer = sandbox.as_service("orders")
        self.session = requests.Session()
        self.cases = 0

    def credential(self, method: str, path: str) -> dict[str, str]:
        if (method.upper(), path) == ("POST", "/events"):
            return self.publisher
        return self.buyer if "/takes" in path else self.owner

    def __call__(self, case: AnyCase) -> None:
        self.cases += 1
        headers = self.credential(case.method, case.path)
        response = case.call(base_url=self.base, session=self.session, headers=headers,
                             timeout=15)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        finally:
            if case.path == "/chaos" and response.status_code == 200:
                self.session.post(f"{self.base}/chaos", json={"clear": True},
                                  headers=self.owner, timeout=10)
            if case.path.endswith("/takes") and response.status_code == 200:
                self.give_back(case)

    def give_back(self, case: AnyCase) -> None:
        """What a case took as orders, for a purchase no order records, goes back: else
        `msshop verify` names it, rightly, as taken and never recorded (the test after)."""
        body = case.body
        takes = body.get("takes") if isinstance(body, dict) else None
        if not isinstance(takes, list):
            return
        keys = list(dict.fromkeys(t["purchase"] for t in takes
                                  if isinstance(t, dict) and isinstance(t.get("purchase"), str)))
        if keys:
            answer = self.session.post(f"{self.base}{case.path}/give-back",
                                       json={"purchases": keys}, headers=self.buyer,
                                       timeout=10)
            assert answer.status_code == 200, answer.text


def examples(strategy: SearchStrategy[AnyCase], call: Callable[[AnyCase], None]
             ) -> Callable[[], None]:
    """A Hypothesis test of `call` over `strategy`'s cases: bounded, and the same cases on
    every run."""

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck), print_blob=RANDOM)
    @given(case=strategy)
    def test(case: AnyCase) -> None:
        tamed(case)
        call(case)

    return test


def fuzz(sandbox: Sandbox, name: str) -> tuple[int, int, list[str]]:
    """Every operation of one service's document, with valid and with invalid data:
    (operations, cases, failures)."""
    caller = Caller(sandbox, name)
    schema = schemathesis.openapi.from_url(f"{caller.base}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():  # all but GET /openapi.json itself
        assert isinstance(result, Ok), result.err()
        operation: APIOperation[Any, Any, Any, Any] = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                examples(operation.as_strategy(generation_mode=mode), caller)()
            except Unsatisfiable:
                if mode is not GenerationMode.NEGATIVE:
                    raise
                # nothing to make invalid: no parameters, no body
            except Exception as exc:  # a failed check; the next operation still runs
                failures.append(f"{name} {operation.label} ({mode.value} data): {exc}")
    return operations, caller.cases, failures


@pytest.mark.parametrize("name", NAMES)
def test_every_operation_answers_as_documented(shop: Sandbox, name: str) -> None:
    started = time.monotonic()
    operations, cases, failures = fuzz(shop, name)
    RAN[name] = (operations, cases, time.monotonic() - started)
    assert operations >= 5  # /health, /spans, /chaos and the service's own
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize(("name", "method", "path", "parts", "status"), REGRESSIONS)
def test_what_the_fuzzer_found_stays_fixed(shop: Sandbox, name: str, method: str, path: str,
                                           parts: dict[str, Any], status: int) -> None:
    caller = Caller(shop, name)
    schema = schemathesis.openapi.from_url(f"{caller.base}/openapi.json")
    case = schema[path][method].Case(**parts)
    headers = caller.credential(method, path)
    response = case.call(base_url=caller.base, session=caller.session, headers=headers,
                         timeout=15)
    assert response.status_code == status, response.text
    case.validate_response(response, checks=CHECKS, headers=headers)


def test_the_read_model_is_still_right_after_the_fuzzing(shop: Sandbox) -> None:
    result = shop.run("verify", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
