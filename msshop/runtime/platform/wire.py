"""msshop's async HTTP client: HTTP/1.1 requests on kept-alive connections, asyncio
protocols, with responses parsed by httptools (the parser uvicorn already serves with).
The services call each other through it (peers.py), the bench's load generator and the
experiments' workload call the sandbox through it. Callers that wait for each answer use
runtime/http1.py's Connection; the request's bytes are made there for both.

Why not aiohttp (issue 14, docs/benchmarks.md): a call between two services on 127.0.0.1
spent more time in aiohttp's request machinery (URLs, headers, timeouts, signals,
response objects) than on the wire. Here a request is one bytes object written, and a
response is a status and a body. Only what services send each other is spoken: plain
HTTP to 127.0.0.1, no TLS, no redirects, no cookies; a response with a length or chunked.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

from msshop.runtime.http1 import encode

# seconds a connection is kept idle: below the servers' keep-alive (connections.keep_alive,
# 30 s, at least 20), so a server never closes one for idleness as a request goes out on it
IDLE = 15.0
IDLE_PER_PEER = 64  # idle connections kept to one peer; more are closed as they finish
RETRIED = frozenset({"GET", "HEAD"})  # safe to send again on a new connection


class ConnectFailed(Exception):
    """The peer could not be reached (refused, unreachable): nothing was sent. The message
    is the reason, as the system words it ("connection refused")."""


class Disconnected(ConnectionError):
    """The peer closed the connection before the response was complete."""


class _Connection(asyncio.Protocol):
    """One connection: one request at a time, the response collected by the parser's
    callbacks and handed to the waiting request."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.received = False  # a byte of the current response arrived
        self._body: list[bytes] = []
        self._waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None

    # asyncio's protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a TCP connection's transport (uvloop's does not subclass asyncio.Transport)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Disconnected(f"malformed response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(Disconnected("the connection was closed before the response ended"))

    # httptools' callbacks
    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(self._body),
                               self.parser.should_keep_alive()))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """(status, body, whether the connection may be used again)."""
        assert self.transport is not None
        self.received = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Client:
    """Kept-alive connections to peers by (host, port). Connections are opened as requests
    need them (the number of requests in flight bounds them) and kept while idle."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def request(self, method: str, host: str, port: int, path: str,
                      body: bytes | None = None, headers: Mapping[str, str] | None = None
                      ) -> tuple[int, bytes]:
        """(status, body). Raises ConnectFailed if the peer cannot be reached, Disconnected
        if it closes the connection mid-answer; the caller bounds the time (cancelling a
        request closes its connection)."""
        message = encode(method, host, port, path, body, headers)
        key = (host, port)
        while True:
            connection = self._take(key)
            reused = connection is not None
            if connection is None:
                connection = await self._connect(host, port)
            try:
                status, content, keep = await connection.exchange(message)
            except Disconnected:
                connection.close()
                # a kept connection the peer had just closed: nothing of it was read, so
                # a request that is safe to repeat goes again on a new one
                if reused and not connection.received and method in RETRIED:
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            if keep and not connection.closed:
                self._give_back(key, connection)
            else:
                connection.close()
            return status, content

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE:
                return connection
            connection.close()
        return None

    def _give_back(self, key: tuple[str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= IDLE_PER_PEER:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    @staticmethod
    async def _connect(host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(_Connection, host, port)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ConnectFailed(reason.lower()) from None
        return connection

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def address_of(url: str) -> tuple[str, int]:
    """(host, port) of a peer's http://HOST:PORT URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        raise ValueError(f"a peer is called at http://HOST:PORT, not {url!r}")
    return parts.hostname, parts.port
