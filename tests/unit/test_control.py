"""The control socket's server side in process: a real listening socket on 127.0.0.1, driven
by a selector loop in the test as the supervisor drives it (one thread, nothing blocks).

Clients that must block (control.call, a big request sent with sendall) run in a thread of
the test; the server never does. Deadlines are short (0.6 s) so the tests stay quick.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from msshop.contracts.errors import SandboxError
from msshop.runtime.orchestrator import control
from msshop.runtime.orchestrator.control import MAX_CONNECTIONS, MAX_LINE, ControlServer

TOKEN = "0123456789abcdef0123456789abcdef"
TIMEOUT = 0.6  # each connection's deadline in these tests
PROMPT = 0.3  # an answer that is not held up by anyone comes well within this
LATE = 0.3  # how late a deadline may be kept on a busy test machine
BUSY = 0.3  # a turn of the loop that waited on a client would take a deadline (0.6 s) or more


def request(op: str = "ping", token: str = TOKEN, **args: Any) -> bytes:
    return json.dumps({"token": token, "op": op, **args}).encode() + b"\n"


class Loop:
    """The supervisor's loop around a ControlServer: select, ready, expire."""

    def __init__(self, *, timeout: float = TIMEOUT, max_connections: int = MAX_CONNECTIONS,
                 handle: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.server = ControlServer(TOKEN, timeout=timeout, max_connections=max_connections)
        self.selector = selectors.DefaultSelector()
        self.server.attach(self.selector)
        self.requests: list[dict[str, Any]] = []  # what reached handle(), token checked
        self.handler = handle or (lambda req: {"ok": True, "op": req["op"]})
        self.longest_turn = 0.0  # the longest turn of the loop, handle() excluded
        self.handling = 0.0

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        began = time.monotonic()
        self.requests.append(req)
        try:
            return self.handler(req)
        finally:
            self.handling += time.monotonic() - began

    def turn(self, wait: float = 0.02) -> None:
        deadline = self.server.next_timeout()
        timeout = wait if deadline is None else min(wait, deadline)
        for key, events in self.selector.select(timeout):
            began, self.handling = time.monotonic(), 0.0
            self.server.ready(key, events, self.handle)
            self.longest_turn = max(self.longest_turn,
                                    time.monotonic() - began - self.handling)
        began, self.handling = time.monotonic(), 0.0
        self.server.expire(self.handle)
        self.longest_turn = max(self.longest_turn, time.monotonic() - began - self.handling)

    def run_until(self, done: Callable[[], bool], limit: float = 5.0,
                  every: Callable[[], None] | None = None) -> float:
        """Turn until done(); seconds it took. Fails past `limit`."""
        began = time.monotonic()
        while not done():
            assert time.monotonic() - began < limit, "not done in time"
            self.turn()
            if every is not None:
                every()
        return time.monotonic() - began

    def run_for(self, seconds: float, every: Callable[[], None] | None = None) -> None:
        ends = time.monotonic() + seconds
        self.run_until(lambda: time.monotonic() >= ends, limit=seconds + 1, every=every)

    def connect(self) -> Client:
        """A raw client, accepted by the server before this returns."""
        waiting = len(self.server.connections) + self.server.refused
        client = Client(self.server.port)
        self.run_until(lambda: len(self.server.connections) + self.server.refused > waiting)
        return client

    def close(self) -> None:
        self.server.close()
        self.selector.close()


class Client:
    """A raw TCP client that never blocks the test: it sends, and looks at what came back."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        self.sock.setblocking(False)
        self.connected_at = time.monotonic()
        self.received = b""
        self.closed_at: float | None = None  # when it saw the server close the connection

    def send(self, data: bytes) -> None:
        self.sock.send(data)

    def closed(self) -> bool:
        """Reads what has arrived; True once the server has closed the connection."""
        while self.closed_at is None:
            try:
                chunk = self.sock.recv(4096)
            except BlockingIOError:
                return False
            except OSError:  # reset
                chunk = b""
            if not chunk:
                self.closed_at = time.monotonic()
            self.received += chunk
        return True

    def answer(self) -> dict[str, Any]:
        line, newline, _ = self.received.partition(b"\n")
        assert newline, f"no answer line: {self.received!r}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def lived(self) -> float:
        assert self.closed_at is not None
        return self.closed_at - self.connected_at

    def close(self) -> None:
        self.sock.close()


class Trickler(Client):
    """Sends one byte every `every` seconds, never a newline, until the server closes it."""

    def __init__(self, port: int, every: float = 0.2) -> None:
        super().__init__(port)
        self.every = every
        self.sent_at = 0.0
        self.sent = 0

    def tick(self) -> None:
        if self.closed() or time.monotonic() - self.sent_at < self.every:
            return
        try:
            self.send(b" ")
        except OSError:
            return  # closed; closed() notices
        self.sent_at, self.sent = time.monotonic(), self.sent + 1


class Caller(threading.Thread):
    """control.call, the client the CLI uses, in a thread of its own (it blocks)."""

    def __init__(self, port: int, op: str = "ping", token: str = TOKEN,
                 timeout: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.port, self.op, self.token, self.timeout = port, op, token, timeout
        self.answer: dict[str, Any] | None = None
        self.error: str | None = None
        self.took = 0.0

    def run(self) -> None:
        began = time.monotonic()
        try:
            self.answer = control.call(self.port, self.token, self.op, timeout=self.timeout)
        except SandboxError as exc:
            self.error = exc.message
        self.took = time.monotonic() - began


class Sender(threading.Thread):
    """Sends `payload` with sendall (it may block), then reads until the server closes."""

    def __init__(self, port: int, payload: bytes) -> None:
        super().__init__(daemon=True)
        self.port, self.payload = port, payload
        self.received = b""

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=3) as conn:
            try:
                conn.sendall(self.payload)
                while chunk := conn.recv(65536):
                    self.received += chunk
            except OSError:
                pass


def finish(loop: Loop, thread: threading.Thread) -> None:
    """Turn the loop until the client thread is done."""
    thread.start()
    loop.run_until(lambda: not thread.is_alive())
    thread.join(timeout=1)


@pytest.fixture
def loop() -> Iterator[Loop]:
    made = Loop()
    try:
        yield made
    finally:
        made.close()


def test_a_ping_with_the_token_is_handled_and_answered(loop: Loop) -> None:
    caller = Caller(loop.server.port, "stop")

    finish(loop, caller)

    assert caller.answer == {"ok": True, "op": "stop"}
    assert loop.requests == [{"token": TOKEN, "op": "stop"}]
    assert loop.server.connections == []


def test_a_trickling_client_delays_no_one_and_is_closed_at_its_deadline(loop: Loop) -> None:
    tricklers = [Trickler(loop.server.port) for _ in range(3)]

    def ticks() -> None:
        for trickler in tricklers:
            trickler.tick()

    loop.run_for(0.3, every=ticks)  # each is under way: accepted, a byte or two sent
    assert len(loop.server.connections) == 3

    caller = Caller(loop.server.port)
    caller.start()
    loop.run_until(lambda: not caller.is_alive(), every=ticks)
    caller.join(timeout=1)

    assert caller.answer == {"ok": True, "op": "ping"}
    assert caller.took < PROMPT, f"the ping took {caller.took:.2f} s"
    loop.run_until(lambda: all(t.closed() for t in tricklers), every=ticks)
    for trickler in tricklers:
        assert trickler.sent >= 2
        assert TIMEOUT - 0.05 < trickler.lived() < TIMEOUT + LATE, trickler.lived()
        assert trickler.answer() == {"ok": False,
                                     "error": "refused: no complete request within 0.6 s"}
        trickler.close()
    assert loop.requests == [{"token": TOKEN, "op": "ping"}]
    assert loop.server.connections == []
    assert loop.longest_turn < BUSY, f"a turn of the loop took {loop.longest_turn:.2f} s"


def test_a_client_that_sends_nothing_is_closed_at_the_deadline(loop: Loop) -> None:
    client = loop.connect()

    loop.run_until(client.closed)

    assert TIMEOUT - 0.05 < client.lived() < TIMEOUT + LATE, client.lived()
    assert client.answer() == {"ok": False,
                               "error": "refused: no complete request within 0.6 s"}
    assert loop.server.connections == []
    assert loop.server.next_timeout() is None
    client.close()


def test_a_line_longer_than_max_line_is_refused(loop: Loop) -> None:
    sender = Sender(loop.server.port, b"x" * (MAX_LINE + 1))  # no newline yet: already too long

    finish(loop, sender)

    assert json.loads(sender.received) == {
        "ok": False, "error": f"refused: a request is one line of at most {MAX_LINE} bytes"}
    assert loop.requests == []
    assert loop.server.connections == []


def test_a_line_of_exactly_max_line_bytes_is_obeyed(loop: Loop) -> None:
    line = request().rstrip(b"\n")
    sender = Sender(loop.server.port, line + b" " * (MAX_LINE - len(line)) + b"\n")

    finish(loop, sender)

    assert json.loads(sender.received) == {"ok": True, "op": "ping"}


@pytest.mark.parametrize(("payload", "error"), [
    (request(token="not-the-token"), "refused: wrong or missing token"),
    (b'{"op": "shutdown"}\n', "refused: wrong or missing token"),
    (b'{"token": 12, "op": "shutdown"}\n', "refused: wrong or missing token"),
    # a token compare_digest cannot take as str: once an exception that ended the supervisor
    (request(token="\u00e9t\u00e9"), "refused: wrong or missing token"),
    (request(token="\ud800"), "refused: wrong or missing token"),
    (b"shutdown please\n", "refused: a request is one JSON object"),
    (b'["shutdown"]\n', "refused: a request is one JSON object"),
    (b"\xff\xfe\n", "refused: a request is one JSON object"),
    # nested too deep for the decoder (RecursionError): once also the supervisor's end
    (b"[" * 60_000 + b"\n", "refused: a request is one JSON object"),
], ids=["wrong", "missing", "not-a-string", "non-ascii", "surrogate", "not-json",
        "not-an-object", "not-utf8", "nested-too-deep"])
def test_a_request_without_the_token_is_refused_and_not_handled(
        loop: Loop, payload: bytes, error: str) -> None:
    sender = Sender(loop.server.port, payload)

    finish(loop, sender)

    assert json.loads(sender.received) == {"ok": False, "error": error}
    assert loop.requests == []


def test_control_call_reports_the_refusal_as_a_sandbox_error(loop: Loop) -> None:
    caller = Caller(loop.server.port, "shutdown", token="guessed")

    finish(loop, caller)

    assert caller.error == "refused: wrong or missing token"
    assert loop.requests == []


def test_connections_beyond_the_cap_are_refused_at_once() -> None:
    loop = Loop(timeout=5.0)  # the idle ones stay for the whole test
    try:
        idle = [loop.connect() for _ in range(MAX_CONNECTIONS)]
        assert len(loop.server.connections) == MAX_CONNECTIONS

        extra = [loop.connect() for _ in range(8)]
        loop.run_until(lambda: all(c.closed() for c in extra))

        for client in extra:
            assert client.lived() < PROMPT
            assert client.answer() == {
                "ok": False,
                "error": f"refused: {MAX_CONNECTIONS} control connections are already "
                         "waiting; try again"}
        assert loop.server.refused == 8
        assert not any(c.closed() for c in idle)

        for client in idle[:4]:  # a few leave: there is room again
            client.close()
        loop.run_until(lambda: len(loop.server.connections) == MAX_CONNECTIONS - 4)
        caller = Caller(loop.server.port)
        finish(loop, caller)
        assert caller.answer == {"ok": True, "op": "ping"}
        for client in (*idle, *extra):
            client.close()
    finally:
        loop.close()


def test_a_request_that_arrived_while_the_loop_was_busy_is_answered_not_dropped() -> None:
    """A command can hold the loop past others' deadlines (start waits until healthy); a
    request that came whole meanwhile is obeyed, and the slow command's answer is sent."""
    waiting: list[Client] = []

    def slow(req: dict[str, Any]) -> dict[str, Any]:
        if req["op"] == "start":
            waiting[0].send(request("ping"))  # arrives while this command runs
            time.sleep(TIMEOUT + 0.2)
        return {"ok": True, "op": req["op"]}

    loop = Loop(handle=slow)
    try:
        waiting.append(loop.connect())  # its deadline runs from now
        caller = Caller(loop.server.port, "start")

        finish(loop, caller)
        loop.run_until(waiting[0].closed)

        assert caller.answer == {"ok": True, "op": "start"}
        assert waiting[0].answer() == {"ok": True, "op": "ping"}
        assert [r["op"] for r in loop.requests] == ["start", "ping"]
        waiting[0].close()
    finally:
        loop.close()


def test_an_answer_the_client_does_not_read_never_blocks_the_loop() -> None:
    big = "x" * (8 * 1024 * 1024)  # far more than a socket buffer holds
    loop = Loop(timeout=1.0, handle=lambda req: {"ok": True, "blob": big})
    try:
        client = loop.connect()
        client.send(request())

        took = loop.run_until(lambda: not loop.server.connections)

        assert 1.0 - 0.05 < took < 1.0 + LATE  # the answer did not fit: closed at its deadline
        assert loop.requests == [{"token": TOKEN, "op": "ping"}]
        assert loop.longest_turn < BUSY, f"a turn of the loop took {loop.longest_turn:.2f} s"
        client.close()

        reader = Sender(loop.server.port, request())  # one that reads gets it all, in pieces
        finish(loop, reader)
        assert json.loads(reader.received) == {"ok": True, "blob": big}
    finally:
        loop.close()


def test_a_request_ends_at_its_newline_or_where_the_client_stops_sending(loop: Loop) -> None:
    client = loop.connect()
    client.send(request().rstrip(b"\n"))
    client.sock.shutdown(socket.SHUT_WR)  # as `printf '{...}' | nc -N` would

    loop.run_until(client.closed)

    assert client.answer() == {"ok": True, "op": "ping"}
    client.close()


def test_a_client_that_leaves_halfway_is_forgotten(loop: Loop) -> None:
    client = loop.connect()
    client.send(b'{"token": ')
    client.close()

    loop.run_until(lambda: not loop.server.connections)

    assert loop.requests == []


def test_close_ends_every_waiting_connection(loop: Loop) -> None:
    clients = [loop.connect() for _ in range(3)]
    fds = loop.server.fds()
    assert len(fds) == 4  # the listening socket and the three connections

    loop.server.close()

    deadline = time.monotonic() + 2
    while not all(c.closed() for c in clients):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert all(c.received == b"" for c in clients)  # closed unanswered
    assert loop.server.connections == []
    for client in clients:
        client.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", loop.server.port), timeout=1).close()
