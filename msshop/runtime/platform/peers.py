"""Calling other services by name, on kept-alive connections (wire.py).

Kept apart from http.py so that a service that calls no one (the bus) never imports the
client: the supervisor can start the bus while it is still importing the rest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import msgspec

from msshop.contracts.spans import Span, traceparent
from msshop.runtime.platform.http import HttpError
from msshop.runtime.platform.links import Links
from msshop.runtime.platform.tracing import Tracer, current_span
from msshop.runtime.platform.wire import Client, ConnectFailed, address_of


@dataclass(frozen=True)
class Reply:
    status: int
    data: Any


DISK_FULL = 507  # a dependency's disk is full: passed on, not a 503 (it is not down)


class Peers:
    """Calls to other services, by service name, on kept-alive connections.

    Each call is a client span (`peer.service`) under the current span, and carries its
    `traceparent`. Connection failures, timeouts and 5xx answers become a 503 HttpError
    naming the dependency and the fix; 4xx answers come back as a Reply to judge. A link
    fault injected on purpose (`links`: POST /chaos with `to`) delays the call, or fails it
    the same way, as a "partition".
    """

    def __init__(self, urls: dict[str, str], timeout: float, tracer: Tracer | None = None,
                 timeouts: dict[str, float] | None = None, links: Links | None = None) -> None:
        self.urls = urls
        self.timeout = timeout
        self.timeouts = timeouts or {}  # per dependency, overriding `timeout`
        self.tracer = tracer
        self.links = links
        self._addresses = {service: address_of(url) for service, url in urls.items()}
        self._client: Client | None = None

    async def start(self) -> None:
        self._client = Client()

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def get(self, service: str, path: str, timeout: float | None = None,
                  raw: bool = False) -> Reply:
        return await self.request("GET", service, path, timeout=timeout, raw=raw)

    async def request(self, method: str, service: str, path: str, body: Any = None,
                      timeout: float | None = None, raw: bool = False,
                      headers: dict[str, str] | None = None, link_faults: bool = True
                      ) -> Reply:
        """Call `service`. `body` is encoded as JSON, or sent as is if it is bytes. With
        `raw`, a 2xx/4xx answer's body comes back as bytes, for the caller to decode.
        `headers` go with the request (e.g. a credential). `link_faults=False`: the caller
        applies the link's faults itself (the log bus: its LinkedBus already did)."""
        if self.tracer is None or current_span() is None:
            return await self._send(method, service, path, body, timeout, None, raw, headers,
                                    link_faults)
        with self.tracer.span(f"{method} {service}", "client", **{
                "peer.service": service, "http.request.method": method,
                "url.path": path.partition("?")[0]}) as span:
            reply = await self._send(method, service, path, body, timeout, span, raw, headers,
                                     link_faults)
            span["attributes"]["http.response.status_code"] = reply.status
            return reply

    async def _send(self, method: str, service: str, path: str, body: Any,
                    timeout: float | None, span: Span | None, raw: bool,
                    extra: dict[str, str] | None = None, link_faults: bool = True) -> Reply:
        assert self._client is not None, "Peers.start() was not awaited"
        if link_faults and self.links is not None:  # inside the span: traces show it
            refused = await self.links.cross(service)
            if refused is not None:
                raise self._failed(span, service, "partition", refused)
        host, port = self._addresses[service]
        data = body if isinstance(body, bytes) or body is None else msgspec.json.encode(body)
        headers = {"content-type": "application/json"} if data is not None else {}
        if extra:
            headers.update(extra)
        if span is not None:
            headers["traceparent"] = traceparent(span)
        limit = timeout if timeout is not None else self.timeouts.get(service, self.timeout)
        try:
            async with asyncio.timeout(limit):
                status, content = await self._client.request(method, host, port, path, data,
                                                             headers)
        except ConnectFailed as exc:
            raise self._failed(span, service, "refused",
                               f"{service} is down: {exc} at "
                               f"{self.urls[service]}; start it with: msshop start {service}"
                               ) from None
        except TimeoutError:
            raise self._failed(span, service, "timeout",
                               f"{service} did not answer within {limit:g} s") from None
        except OSError as exc:
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
            if status == DISK_FULL:  # the operator's fix is the same: said as it is
                raise HttpError(DISK_FULL, str(detail), dependency=service, failure="full")
            raise self._failed(span, service, "5xx",
                               f"{service} failed with HTTP {status}: {detail}")
        return Reply(status, payload)

    @staticmethod
    def _failed(span: Span | None, service: str, failure: str, message: str) -> HttpError:
        if span is not None:
            span["attributes"]["msshop.failure"] = failure
        return HttpError(503, message, dependency=service, failure=failure)

