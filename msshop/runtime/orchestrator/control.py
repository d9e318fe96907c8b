"""The supervisor's command socket: one JSON line in, one JSON line out, over 127.0.0.1.

Only callers that show the sandbox's token (in state.json, readable by its owner only) are
obeyed. Requests: {"token", "op", "service"?}; answers: {"ok": true, ...} or
{"ok": false, "error": "<one line>"}.

The server side never blocks the supervisor's loop: every connection is non-blocking and
watched by that loop's selector; its bytes are gathered as they come. A connection has
TIMEOUT seconds from its accept to send a whole line, and again TIMEOUT seconds to take
its answer; then it is closed. At most MAX_CONNECTIONS wait at once; one more is refused.
So a client that trickles bytes, or says nothing, or never reads, costs the supervisor
nothing but a descriptor for a bounded time.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from msshop.runtime.control_client import MAX_LINE, call

__all__ = ["MAX_LINE", "ControlServer", "call"]

TIMEOUT = 2.0  # seconds a connection has for its request, and then for its answer
MAX_CONNECTIONS = 32  # connections waiting at once; more are refused
MAX_ACCEPTS = 64  # connections accepted per wake-up, so a flood cannot hold the loop

Handler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    deadline: float  # monotonic: when it is closed if not done
    received: bytearray = field(default_factory=bytearray)
    unsent: memoryview | None = None  # the answer's bytes not sent yet, once answered
    closed: bool = False


class ControlServer:
    """The supervisor's side: a listening socket, and the connections it accepted, all
    owned by the supervisor's select loop.

    The loop calls attach(selector) once, ready(key, events, handle) for each selector key
    whose data is this server's (key.data is not None), and expire(handle) on each turn,
    waiting no longer than next_timeout() so that each deadline is kept on time.
    `handle` answers a request whose token was checked; it is the only thing that can take
    long (starting a service waits until it is healthy), and it is called once per request.
    """

    def __init__(self, token: str, host: str = "127.0.0.1", *, timeout: float = TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.token = token
        self.timeout = timeout
        self.max_connections = max_connections
        self.clock = clock
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.connections: list[_Connection] = []  # accepted, not yet answered and closed
        self.selector: selectors.BaseSelector | None = None
        self.refused = 0  # connections refused because MAX_CONNECTIONS were waiting

    def fileno(self) -> int:
        return self.sock.fileno()

    def fds(self) -> list[int]:
        """Every descriptor this server holds (a forked child must close them all)."""
        return [self.sock.fileno(), *(c.sock.fileno() for c in self.connections)]

    # --- driven by the supervisor's loop ----------------------------------------------------

    def attach(self, selector: selectors.BaseSelector) -> None:
        """Watch the listening socket (and from now on, each connection) with `selector`."""
        self.selector = selector
        selector.register(self.sock, selectors.EVENT_READ, self)

    def detach(self) -> None:
        """Close every connection and stop using the selector (the loop is ending)."""
        for conn in list(self.connections):
            self._close(conn)
        if self.selector is not None:
            self._unregister(self.sock)
            self.selector = None

    def ready(self, key: selectors.SelectorKey, events: int, handle: Handler) -> None:
        """The selector says this listening socket or connection can go on."""
        if key.data is self:
            self._accept()
            return
        conn: _Connection = key.data
        if conn.closed:
            return
        if conn.unsent is None:
            if events & selectors.EVENT_READ:
                self._receive(conn, handle)
        elif events & selectors.EVENT_WRITE:
            self._send(conn)

    def next_timeout(self) -> float | None:
        """Seconds until the next connection's deadline (None: no connection waits)."""
        if not self.connections:
            return None
        return max(0.0, min(c.deadline for c in self.connections) - self.clock())

    def expire(self, handle: Handler) -> None:
        """Close the connections past their deadline. A request that arrived whole while
        the loop was busy (starting a service, say) is still answered, not dropped."""
        now = self.clock()
        for conn in [c for c in self.connections if c.deadline <= now]:
            if conn.closed:
                continue
            if conn.unsent is None:
                if not self._receive(conn, handle):  # takes only what has arrived
                    self._refuse(conn,
                                 f"refused: no complete request within {self.timeout:g} s")
            else:
                self._close(conn)  # it does not read its answer

    def close(self) -> None:
        self.detach()
        self.sock.close()

    # --- one connection ---------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(MAX_ACCEPTS):
            try:
                sock, _ = self.sock.accept()
            except BlockingIOError:
                return
            except OSError:  # aborted before we took it, or out of descriptors
                return
            sock.setblocking(False)
            conn = _Connection(sock, deadline=self.clock() + self.timeout)
            if len(self.connections) >= self.max_connections:
                self.refused += 1
                self._refuse(conn, f"refused: {self.max_connections} control connections "
                                   "are already waiting; try again")
                continue
            self.connections.append(conn)
            if self.selector is not None:
                self.selector.register(sock, selectors.EVENT_READ, conn)

    def _receive(self, conn: _Connection, handle: Handler) -> bool:
        """Take what has arrived, never waiting; once the line is whole, answer it.
        False while the line is not whole yet; True once answered, refused or closed."""
        while True:
            try:
                chunk = conn.sock.recv(4096)
            except BlockingIOError:
                return False  # the rest later, or never: the deadline decides
            except OSError:
                self._close(conn)
                return True
            if not chunk:  # it stopped sending: what came is its request, if anything
                if conn.received:
                    self._answer(conn, self._obey(bytes(conn.received), handle))
                else:
                    self._close(conn)
                return True
            start = len(conn.received)  # no newline before this
            conn.received += chunk
            end = conn.received.find(b"\n", start)
            if end > MAX_LINE or (end < 0 and len(conn.received) > MAX_LINE):
                self._refuse(conn, f"refused: a request is one line of at most "
                                   f"{MAX_LINE} bytes")
                return True
            if end >= 0:
                self._answer(conn, self._obey(bytes(conn.received[:end]), handle))
                return True

    def _obey(self, line: bytes, handle: Handler) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: [[[[… nested too deep
            request = None
        if not isinstance(request, dict):
            return {"ok": False, "error": "refused: a request is one JSON object"}
        import hmac  # the supervisor's side only: a client command need not import it

        token = request.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(
                token.encode("utf-8", "surrogatepass"), self.token.encode()):
            return {"ok": False, "error": "refused: wrong or missing token"}
        return handle(request)

    def _answer(self, conn: _Connection, answer: dict[str, Any]) -> None:
        """Send the answer; what the socket cannot take now is sent when it can."""
        conn.unsent = memoryview(json.dumps(answer).encode() + b"\n")
        conn.deadline = self.clock() + self.timeout  # handle() may have taken a while
        self._send(conn)
        if not conn.closed and self.selector is not None:
            self.selector.modify(conn.sock, selectors.EVENT_WRITE, conn)

    def _send(self, conn: _Connection) -> None:
        assert conn.unsent is not None
        try:
            sent = conn.sock.send(conn.unsent)
        except BlockingIOError:
            return
        except OSError:
            self._close(conn)
            return
        conn.unsent = conn.unsent[sent:]
        if not conn.unsent:
            self._close(conn)

    def _refuse(self, conn: _Connection, error: str) -> None:
        """Say why in one line if the socket takes it at once (a refusal must not wait), and
        close."""
        with contextlib.suppress(OSError):
            conn.sock.send(json.dumps({"ok": False, "error": error}).encode() + b"\n")
        self._close(conn)

    def _close(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn in self.connections:
            self.connections.remove(conn)
            self._unregister(conn.sock)
        conn.sock.close()

    def _unregister(self, sock: socket.socket) -> None:
        if self.selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(sock)
