"""HTTP for every service: JSON in and out, errors, parameters, and the peer client.

Errors are always JSON: {"error": "<one line>", "status": N, "service": "<who answered>"}
and, when a dependency failed, "dependency": "<which>". A person reading only the message
should know what went wrong and what to do.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from msshop.platform.tracing import Span, Tracer, current_span, traceparent

log = logging.getLogger("msshop.http")
T = TypeVar("T")

MAX_BATCH = 10_000  # ids in one ?ids= query, items in one batch body


class HttpError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def json_response(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


async def read_body(request: Request, kind: type[T]) -> T:
    """Decode and validate a JSON body; a bad one is a 422 that names the field."""
    body = await request.body()
    if not body:
        raise HttpError(422, "request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise HttpError(422, f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise HttpError(422, f"request body is not valid JSON: {exc}") from None


def require_token(request: Request, token: str | None, what: str) -> None:
    """Only callers that hold the sandbox's token (in its state file, mode 0600) may `what`:
    401 without one, 403 with a wrong one."""
    header = request.headers.get("authorization")
    if not header or not header.lower().startswith("bearer "):
        raise HttpError(401, f"{what} needs the sandbox's token: send 'authorization: Bearer "
                             "<token from state.json>', or use the msshop command")
    if token is None or not hmac.compare_digest(header[7:].strip(), token):
        raise HttpError(403, f"{what} refused: that is not this sandbox's token")


def id_param(request: Request, name: str) -> int:
    """A positive integer from the path, e.g. /users/{user_id}."""
    raw = request.path_params[name]
    return _positive_int(raw, f"{name} '{raw}'")


def query_value(request: Request, name: str) -> str | None:
    """One query parameter. Plain `a=b&c=d` strings (all msshop sends) are split here; only
    escaped ones pay for Starlette's full parse. This is on every request's path."""
    raw: bytes = request.scope["query_string"]
    if b"%" in raw or b"+" in raw:
        return request.query_params.get(name)
    key = name.encode()
    for pair in raw.split(b"&"):
        found, _, value = pair.partition(b"=")
        if found == key:
            return value.decode("latin-1")
    return None


def int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = query_value(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise HttpError(422, f"query parameter {name}={raw!r} must be an integer "
                             f"from {low} to {high}")
    return value


def ids_query(request: Request, name: str = "ids") -> list[int] | None:
    """`?ids=1,2,3` as a list of distinct ids in the given order, or None when absent."""
    raw = query_value(request, name)
    if raw is None:
        return None
    parts = [p for p in raw.split(",") if p.strip()]
    if len(parts) > MAX_BATCH:
        raise HttpError(422, f"query parameter {name} has {len(parts)} ids; "
                             f"ask for at most {MAX_BATCH} at a time")
    ids = [_positive_int(p.strip(), f"{name} entry '{p.strip()}'") for p in parts]
    return list(dict.fromkeys(ids))


def _positive_int(raw: str, what: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(422, f"{what} is not an id: ids are positive integers") from None
    if value < 1:
        raise HttpError(422, f"{what} is not an id: ids are positive integers")
    return value


# --- calling other services ------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    data: Any


class Peers:
    """A pooled keep-alive client for calls to other services, by service name.

    Each call is a client span (`peer.service`) under the current span, and carries its
    `traceparent`. Connection failures, timeouts and 5xx answers become a 503 HttpError
    naming the dependency and the fix; 4xx answers come back as a Reply to judge.
    """

    def __init__(self, urls: dict[str, str], timeout: float, tracer: Tracer | None = None,
                 timeouts: dict[str, float] | None = None) -> None:
        self.urls = urls
        self.timeout = timeout
        self.timeouts = timeouts or {}  # per dependency, overriding `timeout`
        self.tracer = tracer
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30, ttl_dns_cache=None)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout),
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, service: str, path: str, timeout: float | None = None,
                  raw: bool = False) -> Reply:
        return await self.request("GET", service, path, timeout=timeout, raw=raw)

    async def request(self, method: str, service: str, path: str, body: Any = None,
                      timeout: float | None = None, raw: bool = False) -> Reply:
        """Call `service`. `body` is encoded as JSON, or sent as is if it is bytes. With
        `raw`, a 2xx/4xx answer's body comes back as bytes, for the caller to decode."""
        if self.tracer is None or current_span() is None:
            return await self._send(method, service, path, body, timeout, None, raw)
        with self.tracer.span(f"{method} {service}", "client", **{
                "peer.service": service, "http.request.method": method,
                "url.path": path.partition("?")[0]}) as span:
            reply = await self._send(method, service, path, body, timeout, span, raw)
            span["attributes"]["http.response.status_code"] = reply.status
            return reply

    async def _send(self, method: str, service: str, path: str, body: Any,
                    timeout: float | None, span: Span | None, raw: bool) -> Reply:
        assert self._session is not None, "Peers.start() was not awaited"
        url = self.urls[service] + path
        data = body if isinstance(body, bytes) or body is None else msgspec.json.encode(body)
        headers = {"content-type": "application/json"} if data is not None else {}
        if span is not None:
            headers["traceparent"] = traceparent(span)
        limit = timeout if timeout is not None else self.timeouts.get(service, self.timeout)
        try:
            async with self._session.request(
                    method, url, data=data, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=limit)) as resp:
                content = await resp.read()
                status = resp.status
        except aiohttp.ClientConnectorError:
            raise self._failed(span, service, "refused",
                               f"{service} is down: connection refused at {self.urls[service]}; "
                               f"start it with: msshop start {service}") from None
        except TimeoutError:
            raise self._failed(span, service, "timeout",
                               f"{service} did not answer within {limit:g} s") from None
        except aiohttp.ClientError as exc:
            raise self._failed(span, service, "error",
                               f"{service} failed: {type(exc).__name__}: {exc}") from None
        if raw and status < 500:
            return Reply(status, content)
        try:
            payload = msgspec.json.decode(content) if content else None
        except msgspec.DecodeError:
            payload = {"error": content[:200].decode(errors="replace")}
        if status >= 500:
            detail = payload.get("error") if isinstance(payload, dict) else payload
            raise self._failed(span, service, "5xx",
                               f"{service} failed with HTTP {status}: {detail}")
        return Reply(status, payload)

    @staticmethod
    def _failed(span: Span | None, service: str, failure: str, message: str) -> HttpError:
        if span is not None:
            span["attributes"]["msshop.failure"] = failure
        return HttpError(503, message, dependency=service, failure=failure)
