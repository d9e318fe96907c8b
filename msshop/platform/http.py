"""HTTP for every service: the app factory, JSON in and out, errors, and the peer client.

Errors are always JSON: {"error": "<one line>", "status": N, "service": "<who answered>"}
and, when a dependency failed, "dependency": "<which>". A person reading only the message
should know what went wrong and what to do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

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


def id_param(request: Request, name: str) -> int:
    """A positive integer from the path, e.g. /users/{user_id}."""
    raw = request.path_params[name]
    return _positive_int(raw, f"{name} '{raw}'")


def int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
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
    raw = request.query_params.get(name)
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


# --- the app factory -------------------------------------------------------------------------

class Resource(Protocol):
    """Something a service opens when it starts and closes when it stops."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def service_app(
    service: str,
    routes: Sequence[BaseRoute],
    health: Callable[[], dict[str, Any]],
    resources: Sequence[Resource] = (),
) -> Starlette:
    """A Starlette app with GET /health and JSON errors, as every msshop service has.

    `resources` start in order when the app starts (in the service's own process, after
    the fork) and close in reverse order when it stops.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened: list[Resource] = []
        try:
            for resource in resources:
                await resource.start()
                opened.append(resource)
            yield
        finally:
            for resource in reversed(opened):
                await resource.close()

    async def health_endpoint(request: Request) -> Response:
        return json_response({"service": service, "status": "ok", "pid": os.getpid(),
                              **health()})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HttpError)
        return json_response({"error": exc.message, "status": exc.status, "service": service,
                              **exc.extra}, exc.status)

    async def starlette_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = f"{service} has no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{service} does not allow {request.method} on {request.url.path}"
        else:
            message = str(exc.detail)
        return json_response({"error": message, "status": exc.status_code, "service": service},
                             exc.status_code)

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return json_response({"error": f"{service} failed: {type(exc).__name__}: {exc}; "
                                       f"see: msshop logs {service}",
                              "status": 500, "service": service}, 500)

    return Starlette(
        routes=[Route("/health", health_endpoint), *routes],
        exception_handlers={HttpError: http_error, HTTPException: starlette_error,
                            Exception: crash},
        lifespan=lifespan,
    )


# --- calling other services ------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    data: Any


class Peers:
    """A pooled keep-alive client for calls to other services, by service name.

    Connection failures, timeouts and 5xx answers become a 503 HttpError naming the
    dependency and the fix; 4xx answers come back as a Reply for the caller to judge.
    """

    def __init__(self, urls: dict[str, str], timeout: float) -> None:
        self.urls = urls
        self.timeout = timeout
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

    async def get(self, service: str, path: str) -> Reply:
        return await self.request("GET", service, path)

    async def request(self, method: str, service: str, path: str, body: Any = None) -> Reply:
        assert self._session is not None, "Peers.start() was not awaited"
        url = self.urls[service] + path
        data = None if body is None else msgspec.json.encode(body)
        headers = {"content-type": "application/json"} if data is not None else None
        try:
            async with self._session.request(method, url, data=data, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except aiohttp.ClientConnectorError:
            raise HttpError(503, f"{service} is down: connection refused at {self.urls[service]}; "
                                 f"start it with: msshop start {service}",
                            dependency=service, failure="refused") from None
        except TimeoutError:
            raise HttpError(503, f"{service} did not answer within {self.timeout:g} s",
                            dependency=service, failure="timeout") from None
        except aiohttp.ClientError as exc:
            raise HttpError(503, f"{service} failed: {type(exc).__name__}: {exc}",
                            dependency=service, failure="error") from None
        try:
            payload = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            payload = {"error": raw[:200].decode(errors="replace")}
        if status >= 500:
            detail = payload.get("error") if isinstance(payload, dict) else payload
            raise HttpError(503, f"{service} failed with HTTP {status}: {detail}",
                            dependency=service, failure="5xx")
        return Reply(status, payload)
