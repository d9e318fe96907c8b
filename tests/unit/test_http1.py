"""The sync side's HTTP client (runtime/http1.py) against a real socket server in a thread,
which answers as each test needs: a kept-alive connection reused, chunked and
close-delimited bodies, a server that closes a kept connection (the request goes again)
or closes mid-answer (it does not), one that is not there or too slow, and requests that
would be smuggled refused."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator

import pytest

from msshop.runtime.http1 import Connection, Disconnected, Malformed, TooLarge

# (the request's head, the connection's socket, how many requests it had before) -> whether
# to keep the connection open for another request
Answer = Callable[[bytes, socket.socket, int], bool]


@contextlib.contextmanager
def server(answer: Answer) -> Iterator[tuple[int, list[int]]]:
    """A server on a free port that hands each request's head to `answer`; the list counts
    the requests seen on each connection (one entry per connection)."""
    connections: list[int] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            connections.append(0)
            index = len(connections) - 1
            sock: socket.socket = self.request
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                        while len(buffer) < length:
                            buffer += sock.recv(65536)
                        buffer = buffer[length:]
                seen = connections[index]
                connections[index] += 1
                if not answer(head, sock, seen):
                    return

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as running:
        running.daemon_threads = True
        thread = threading.Thread(target=running.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        try:
            yield running.server_address[1], connections
        finally:
            running.shutdown()


def ok(head: bytes, sock: socket.socket, seen: int) -> bool:
    path = head.split(b" ")[1]
    sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(path), path))
    return True


def test_a_connection_is_kept_and_used_again() -> None:
    with server(ok) as (port, connections), Connection("127.0.0.1", port, 5) as connection:
        assert connection.request("GET", "/a") == (200, b"/a")
        assert connection.request("POST", "/b", b"{}",
                                  {"content-type": "application/json"}) == (200, b"/b")
        assert connections == [2]


def test_a_chunked_body_is_put_together() -> None:
    def chunked(head: bytes, sock: socket.socket, seen: int) -> bool:
        sock.sendall(b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n"
                     b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\ntrailer: yes\r\n\r\n")
        return True

    with server(chunked) as (port, connections), Connection("127.0.0.1", port, 5) as conn:
        assert conn.request("GET", "/") == (404, b"abcde")
        assert conn.request("GET", "/") == (404, b"abcde")
        assert connections == [2]


def test_a_body_without_a_length_ends_with_the_connection() -> None:
    def http10(head: bytes, sock: socket.socket, seen: int) -> bool:
        sock.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 100_000)
        return False

    with server(http10) as (port, connections), Connection("127.0.0.1", port, 5) as conn:
        assert conn.request("GET", "/") == (200, b"x" * 100_000)
        assert conn.request("GET", "/") == (200, b"x" * 100_000)
        assert connections == [1, 1]


def test_an_answer_with_connection_close_is_not_kept() -> None:
    def closing(head: bytes, sock: socket.socket, seen: int) -> bool:
        sock.sendall(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
        return False

    with server(closing) as (port, connections), Connection("127.0.0.1", port, 5) as conn:
        assert conn.request("DELETE", "/") == (204, b"")
        assert conn.request("DELETE", "/") == (204, b"")
        assert connections == [1, 1]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_kept_connection_the_server_closed_is_opened_again(method: str) -> None:
    def once(head: bytes, sock: socket.socket, seen: int) -> bool:
        ok(head, sock, seen)
        return False  # closed without saying so, as a server whose keep-alive ran out

    with server(once) as (port, connections), Connection("127.0.0.1", port, 5) as conn:
        assert conn.request(method, "/a", b"{}") == (200, b"/a")
        assert conn.request(method, "/b", b"{}") == (200, b"/b")
        assert connections == [1, 1]


def test_a_server_that_closes_mid_answer_is_disconnected_and_not_asked_again() -> None:
    def cut(head: bytes, sock: socket.socket, seen: int) -> bool:
        if seen == 0:
            ok(head, sock, seen)
            return True
        sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        return False

    with server(cut) as (port, connections), Connection("127.0.0.1", port, 5) as conn:
        conn.request("POST", "/a")
        with pytest.raises(Disconnected, match="before its answer ended"):
            conn.request("POST", "/b")
        assert connections == [2]


def test_a_server_that_is_not_there_is_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: nothing accepts
        with pytest.raises(ConnectionRefusedError):
            Connection("127.0.0.1", port, 5).request("GET", "/")


def test_a_server_slower_than_the_timeout_times_out() -> None:
    release = threading.Event()

    def slow(head: bytes, sock: socket.socket, seen: int) -> bool:
        release.wait(5)
        return False

    with server(slow) as (port, _), Connection("127.0.0.1", port, 0.05) as conn:
        try:
            with pytest.raises(TimeoutError):
                conn.request("GET", "/")
        finally:
            release.set()


def test_an_answer_larger_than_asked_for_or_not_http_is_refused() -> None:
    def big(head: bytes, sock: socket.socket, seen: int) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 1000)
        return True

    def garbage(head: bytes, sock: socket.socket, seen: int) -> bool:
        sock.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")
        return True

    with server(big) as (port, _), Connection("127.0.0.1", port, 5) as conn:
        with pytest.raises(TooLarge):
            conn.request("GET", "/", most=999)
        assert conn.request("GET", "/", most=1000) == (200, b"x" * 1000)
    with (server(garbage) as (port, _), Connection("127.0.0.1", port, 5) as conn,
          pytest.raises(Malformed)):
        conn.request("GET", "/")


@pytest.mark.parametrize(("path", "headers"), [
    ("/a b", {}), ("/a\r\nx: y", {}), ("/", {"traceparent": "00\r\nevil: 1"}),
    ("/", {"x\nevil": "1"})])
def test_a_request_that_would_change_meaning_on_the_wire_is_refused(
        path: str, headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="refused"):
        Connection("127.0.0.1", 9, 5).request("GET", path, None, headers)
