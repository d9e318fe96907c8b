"""The services' HTTP client (platform/wire.py) against a real socket server in-process,
which answers as each test needs: kept-alive connections reused, chunked bodies, a peer
that closes, one that is not there, and requests that would be smuggled refused."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvloop

from msshop.runtime.platform.wire import Client, ConnectFailed, Disconnected

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def peer(answer: Answer) -> AsyncIterator[tuple[Client, int, list[int]]]:
    """A client, and a server on a free port that hands each request's head to `answer`;
    both closed afterwards. The list counts the requests seen on each connection (one
    entry per connection)."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(0)
        index = len(connections) - 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                connections[index] += 1
                await answer(head, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    client = Client()
    try:
        yield client, server.sockets[0].getsockname()[1], connections
    finally:
        client.close()
        server.close()


async def ok(head: bytes, writer: asyncio.StreamWriter) -> None:
    path = head.split(b" ")[1]
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(path), path))
    await writer.drain()


def run(test: Callable[[], Awaitable[None]]) -> None:
    """On asyncio's own loop, and on uvloop, which the services run on."""
    asyncio.run(asyncio.wait_for(test(), 10))
    uvloop.run(asyncio.wait_for(test(), 10))


def test_a_connection_is_kept_and_used_again() -> None:
    async def test() -> None:
        async with peer(ok) as (client, port, connections):
            assert await client.request("GET", "127.0.0.1", port, "/a") == (200, b"/a")
            assert await client.request("POST", "127.0.0.1", port, "/b", b"{}",
                                        {"content-type": "application/json"}) == (200, b"/b")
            assert connections == [2]
    run(test)


def test_a_chunked_body_is_put_together() -> None:
    async def chunked(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        await writer.drain()

    async def test() -> None:
        async with peer(chunked) as (client, port, _):
            assert await client.request("GET", "127.0.0.1", port, "/x") == (404, b"abcde")
    run(test)


def test_connection_close_is_honoured() -> None:
    async def closing(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def test() -> None:
        async with peer(closing) as (client, port, connections):
            for _ in range(3):
                assert await client.request("GET", "127.0.0.1", port, "/") == (200, b"ok")
            assert connections == [1, 1, 1]
    run(test)


async def answer_then_close(head: bytes, writer: asyncio.StreamWriter) -> None:
    """A peer that closes a kept connection once it has answered (a restarted service, or
    a server's idle timeout)."""
    await ok(head, writer)
    writer.close()


@pytest.mark.parametrize("pause", [0.0, 0.05])
def test_a_kept_connection_the_peer_closed_is_not_seen_by_a_get(pause: float) -> None:
    """The peer closes a kept connection once it has answered (as a restarted service
    does): the next GET goes on a new connection, whether the close was noticed before it
    (pause) or only as it was sent (no pause: it is sent again)."""
    async def test() -> None:
        async with peer(answer_then_close) as (client, port, connections):
            assert await client.request("GET", "127.0.0.1", port, "/1") == (200, b"/1")
            await asyncio.sleep(pause)
            assert await client.request("GET", "127.0.0.1", port, "/2") == (200, b"/2")
            assert connections[-1] == 1 and sum(connections) == 2
    run(test)


def test_a_post_on_a_kept_connection_the_peer_had_just_closed_is_not_sent_again() -> None:
    """The peer closed a kept connection as a POST went out on it (a server's idle timeout
    or its connection cap, at that instant): the POST is not repeated on a new connection,
    since the client cannot know it was not read; the caller hears of it (a relay sends
    its batch again, which the bus takes once by event id)."""
    async def test() -> None:
        async with peer(answer_then_close) as (client, port, connections):
            assert await client.request("GET", "127.0.0.1", port, "/1") == (200, b"/1")
            with pytest.raises(Disconnected):
                await client.request("POST", "127.0.0.1", port, "/orders", b"{}",
                                     {"content-type": "application/json"})
            assert sum(connections) == 1, "the POST was sent again on a new connection"
    run(test)


def test_a_peer_that_closes_mid_answer_is_an_error_and_a_post_is_not_sent_twice() -> None:
    async def half(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await writer.drain()
        writer.close()

    async def test() -> None:
        async with peer(half) as (client, port, connections):
            with pytest.raises(Disconnected):
                await client.request("POST", "127.0.0.1", port, "/orders", b"{}")
            assert connections == [1]
    run(test)


def test_requests_in_flight_together_each_have_a_connection_and_leave_it_for_the_next(
) -> None:
    """The experiments' workload sends on schedule whether or not earlier requests have
    answered: each in flight gets a connection of its own, and the next wave reuses them."""
    async def slow(head: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.02)
        await ok(head, writer)

    async def test() -> None:
        async with peer(slow) as (client, port, connections):
            for _ in range(2):
                answers = await asyncio.gather(*(
                    client.request("GET", "127.0.0.1", port, f"/{n}") for n in range(40)))
                assert answers == [(200, f"/{n}".encode()) for n in range(40)]
            assert len(connections) == 40 and sum(connections) == 80
    run(test)


def test_a_request_past_its_time_is_cancelled_and_its_connection_not_used_again() -> None:
    async def late_then_ok(head: bytes, writer: asyncio.StreamWriter) -> None:
        if b"/late" in head:
            await asyncio.sleep(0.2)
        await ok(head, writer)

    async def test() -> None:
        async with peer(late_then_ok) as (client, port, connections):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.02):
                    await client.request("GET", "127.0.0.1", port, "/late")
            assert await client.request("GET", "127.0.0.1", port, "/next") == (200, b"/next")
            assert len(connections) == 2  # the late answer's connection was closed
    run(test)


def test_a_peer_that_is_not_there_is_refused_and_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed; nothing listens on it

    async def test() -> None:
        with pytest.raises(ConnectFailed, match="connection refused"):
            await Client().request("GET", "127.0.0.1", port, "/")
    run(test)


@pytest.mark.parametrize(("path", "headers"), [
    ("/a b", {}), ("/a\r\nx: y", {}), ("/", {"traceparent": "00\r\nevil: 1"})])
def test_a_request_that_would_change_meaning_on_the_wire_is_refused(
        path: str, headers: dict[str, str]) -> None:
    async def test() -> None:
        with pytest.raises(ValueError, match="refused"):
            await Client().request("GET", "127.0.0.1", 9, path, None, headers)
    run(test)
