"""The connections a service takes (runtime/platform/connections.py), on the real server
stack in-process: runner.PromptServer over uvicorn and httptools, with short deadlines so
each test takes seconds. A client that sends nothing, half a request line or a trickle of
a body is closed within the request deadline; an idle kept-alive connection within the
keep-alive timeout; a request that runs long is never cut; at the cap a new connection
closes the idle ones, or is answered 503 in the services' JSON shape when none is idle."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
import uvloop

from msshop.contracts.config import ConnectionLimits
from msshop.runtime.platform import connections
from msshop.runtime.platform.connections import ConnectionGuard, guarded
from msshop.runtime.platform.runner import PromptServer
from msshop.runtime.platform.wire import Client

DEADLINE = 1.0  # seconds to send a request, in these tests
KEEP_ALIVE = 1  # seconds idle between requests
SLACK = 2.0  # the sweep's half second, and a loaded machine's


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/slow?S sleeps S seconds (before reading a body); /body reads the whole body;
    anything else answers ok."""
    if scope["type"] != "http":
        return
    if scope["path"] in ("/slow", "/slow-body"):
        await asyncio.sleep(float(scope["query_string"] or 0))
    if scope["path"] in ("/body", "/slow-body"):
        while (await receive()).get("more_body"):
            pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.contextmanager
def server(cap: int = 100) -> Iterator[int]:
    with served(cap) as (port, _):
        yield port


@contextlib.contextmanager
def served(cap: int) -> Iterator[tuple[int, PromptServer]]:
    """A guarded server on a free port in a thread of its own; stopped afterwards."""
    limits = ConnectionLimits(request_timeout=DEADLINE, keep_alive=KEEP_ALIVE)
    guard = ConnectionGuard("shop", limits, cap)
    config = uvicorn.Config(app, loop="none", http=guarded(guard), ws="none",
                            lifespan="off", log_config=None, access_log=False,
                            timeout_keep_alive=KEEP_ALIVE, timeout_graceful_shutdown=1)
    prompt = PromptServer(config, release=lambda: None, guard=guard)
    sock = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=lambda: uvloop.run(prompt.serve(sockets=[sock])))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not prompt.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield sock.getsockname()[1], prompt
    finally:
        assert prompt.loop is not None
        prompt.loop.call_soon_threadsafe(prompt.exit_now)
        thread.join(10)
        sock.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes `sock` (reading what it sends meanwhile)."""
    started = time.monotonic()
    with contextlib.suppress(ConnectionResetError):
        while sock.recv(65536):
            pass
    return time.monotonic() - started


def ask(sock: socket.socket, path: str = "/") -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: shop\r\n\r\n".encode())
    answer = b""
    while not answer.endswith(b"\r\n\r\nok") and not answer.endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def test_a_client_that_sends_nothing_or_half_a_request_line_is_closed_within_the_deadline(
) -> None:
    with server() as port:
        silent, half = connect(port), connect(port)
        with silent, half:
            half.sendall(b"GET /he")
            assert closed_after(silent) < DEADLINE + SLACK
            assert closed_after(half) < SLACK  # closed at the same sweep as the silent one


def test_a_trickled_body_is_closed_within_the_deadline() -> None:
    with server() as port, connect(port) as sock:
        sock.sendall(b"POST /body HTTP/1.1\r\nhost: shop\r\ncontent-length: 1000\r\n\r\n")
        started = time.monotonic()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() - started < DEADLINE + SLACK + 1:
                sock.sendall(b"x")  # a byte at a time, never the whole body
                time.sleep(0.1)
        assert time.monotonic() - started < DEADLINE + SLACK + 1, "the trickle was not cut"


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout() -> None:
    with server() as port, connect(port) as sock:
        assert ask(sock).endswith(b"ok")
        assert ask(sock).endswith(b"ok"), "kept alive between requests"
        assert KEEP_ALIVE * 0.5 < closed_after(sock) < KEEP_ALIVE + SLACK


def test_a_request_running_longer_than_the_deadline_is_not_cut() -> None:
    with server() as port, connect(port) as sock:
        started = time.monotonic()
        assert ask(sock, f"/slow?{DEADLINE * 3}").endswith(b"ok")
        assert time.monotonic() - started >= DEADLINE * 3
        assert ask(sock).endswith(b"ok"), "and the connection is still there"


def test_a_big_body_the_app_is_slow_to_read_is_not_cut() -> None:
    """The whole body was sent at once; uvicorn stops reading past 64 KiB until the app
    reads it: that wait is the app's, not a slow client's."""
    body = b"x" * 1_000_000
    with server() as port, connect(port) as sock:
        started = time.monotonic()
        sock.sendall(f"POST /slow-body?{DEADLINE * 3} HTTP/1.1\r\nhost: shop\r\n"
                     f"content-length: {len(body)}\r\n\r\n".encode() + body)
        assert sock.recv(65536).endswith(b"ok")
        assert time.monotonic() - started >= DEADLINE * 3


def test_at_the_cap_the_idle_connections_make_room_and_one_line_says_so(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, "msshop.connections")
    monkeypatch.setattr(connections, "QUIET", 0.5)  # a burst ends after 0.5 s of quiet
    cap = 8
    with server(cap=cap) as port:
        flood = [connect(port) for _ in range(cap * 3)]
        try:
            for _ in range(3):
                with connect(port) as sock:
                    assert ask(sock).endswith(b"ok")
            assert sum(1 for sock in flood if not alive(sock)) >= cap * 2
        finally:
            for sock in flood:
                sock.close()
        deadline = time.monotonic() + DEADLINE + SLACK + 2
        while not any("has passed" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the burst's end was not said"
            time.sleep(0.05)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings  # once per burst, not once per connection
        assert f"shop has {cap} connections open, the most it takes" in warnings[0]
        ended = [r.getMessage() for r in caplog.records if "has passed" in r.getMessage()]
        assert len(ended) == 1 and "closed to make room" in ended[0], ended


def test_at_the_cap_with_every_connection_busy_a_new_one_is_answered_503_in_json() -> None:
    cap = 8
    with served(cap) as (port, prompt):
        busy = [connect(port) for _ in range(cap)]
        try:
            for sock in busy:
                sock.sendall(b"GET /slow?3 HTTP/1.1\r\nhost: shop\r\n\r\n")
            deadline = time.monotonic() + 10
            while len(prompt.server_state.tasks) < cap:  # every request running
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with connect(port) as sock:
                answer = ask(sock)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503")
            error = json.loads(body)
            assert error["status"] == 503 and error["service"] == "shop"
            assert "connections open" in error["error"]
            for sock in busy:  # and the busy ones are answered
                assert sock.recv(65536).endswith(b"ok")
        finally:
            for sock in busy:
                sock.close()


def alive(sock: socket.socket) -> bool:
    """Whether the server still holds `sock` open (a closed one reads as EOF or reset)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    finally:
        sock.setblocking(True)


def test_the_services_client_finds_its_kept_connection_closed_by_the_keep_alive_timeout(
) -> None:
    """wire.Client (the services' calls to each other) after the server closed its kept
    connection for being idle: a GET and a POST each go on a new connection, once."""
    async def calls(port: int, prompt: PromptServer) -> None:
        client = Client()
        try:
            assert await client.request("GET", "127.0.0.1", port, "/") == (200, b"ok")
            deadline = time.monotonic() + KEEP_ALIVE + SLACK
            while prompt.server_state.connections:  # closed by the keep-alive timeout
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert await client.request("POST", "127.0.0.1", port, "/body", b"{}") == (
                200, b"ok")
            assert await client.request("GET", "127.0.0.1", port, "/") == (200, b"ok")
            assert len(prompt.server_state.connections) == 1
        finally:
            client.close()

    with served(100) as (port, prompt):
        uvloop.run(calls(port, prompt))
