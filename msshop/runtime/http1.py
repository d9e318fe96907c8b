"""HTTP/1.1 as msshop's clients speak it: a request's bytes (`encode`, for both clients),
and `Connection`, the client of callers that wait for each answer: one kept-alive
connection to one server, over a plain socket. The CLI's ShopClient, the bench's latency
timer and the supervisor's health probe call through it; the async callers (services, the
bench's load generator, the experiments' workload) through platform/wire.py.

Below the platform and the orchestrator, and standard library only: commands that talk to
a sandbox import it without the server stack (tests/test_architecture.py).

Why not http.client: importing it (with the email parser it reads headers with) costs
~12 ms of a command that should start in ~100, and each request ~30 us more. Only what
msshop's servers answer is read: a status, a length or chunks or the end of the
connection. No TLS, no redirects, no proxies. A request or an answer with a control
character or a space where it would change the meaning on the wire is refused.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

READ = 65536  # bytes asked of the socket at a time
NO_BODY = frozenset({204, 304})


class Disconnected(ConnectionResetError):
    """The server closed the connection before its answer was complete."""


class Malformed(ConnectionError):
    """The answer is not HTTP/1.x as this client reads it."""


class TooLarge(ConnectionError):
    """The answer's body is bigger than the caller accepts."""


class Connection:
    """Requests to host:port, one at a time, on a connection kept open between them.

    `timeout` bounds each step (connecting, each send, each read), as a socket's timeout
    does. A kept connection the server had closed meanwhile (nothing of the answer came) is
    opened again and the request sent once more.
    """

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._socket: socket.socket | None = None
        self._buffer = b""

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, most: int | None = None
                ) -> tuple[int, bytes]:
        """(status, body). Raises OSError: TimeoutError when a step takes longer than the
        timeout, ConnectionRefusedError and the like when the server cannot be reached,
        Disconnected, Malformed, TooLarge (more than `most` bytes of body)."""
        message = encode(method, self.host, self.port, path, body, headers)
        while True:
            reused = self._socket is not None
            sock = self._socket or self._connect()
            self._buffer = b""
            try:
                sock.sendall(message)
                status, content, keep = self._answer(method, most)
            except (BrokenPipeError, ConnectionResetError) as exc:
                answered = isinstance(exc, Disconnected) and bool(self._buffer)
                self.close()
                if reused and not answered:
                    continue  # closed by the server while it was kept: send it again
                raise
            except BaseException:
                self.close()
                raise
            if not keep:
                self.close()
            return status, content

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._buffer = b""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket = sock
        return sock

    def _answer(self, method: str, most: int | None) -> tuple[int, bytes, bool]:
        """(status, body, whether the connection may be used again)."""
        head = self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if version not in ("HTTP/1.1", "HTTP/1.0") or not code.isdigit():
            raise Malformed(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        status = int(code)
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise Malformed(f"a header line without a colon: {line[:80]!r}")
            fields[name.strip().lower()] = value.strip()
        connection = fields.get("connection", "").lower()
        keep = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        if method == "HEAD" or status in NO_BODY or 100 <= status < 200:
            return status, b"", keep
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return status, self._chunks(most), keep
        length = fields.get("content-length")
        if length is None:  # the body ends with the connection
            return status, self._to_the_end(most), False
        if not length.isdigit():
            raise Malformed(f"content-length is not a number: {length[:40]!r}")
        size = int(length)
        if most is not None and size > most:
            raise TooLarge(f"an answer of {size} bytes, more than {most}")
        return status, self._exactly(size), keep

    def _chunks(self, most: int | None) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self._until(b"\r\n").partition(b";")[0].strip()
            try:
                length = int(line, 16)
            except ValueError:
                raise Malformed(f"a chunk's size is not hexadecimal: {line[:40]!r}") from None
            if length == 0:
                while self._until(b"\r\n"):  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            size += length
            if most is not None and size > most:
                raise TooLarge(f"an answer of more than {most} bytes")
            parts.append(self._exactly(length))
            if self._exactly(2) != b"\r\n":
                raise Malformed("a chunk does not end with CRLF")

    def _until(self, end: bytes) -> bytes:
        """The bytes up to `end` (taken from the buffer with it; `end` not returned)."""
        while (found := self._buffer.find(end)) < 0:
            if len(self._buffer) > READ:
                raise Malformed("an answer's head or chunk line longer than 64 KiB")
            self._receive()
        taken, self._buffer = self._buffer[:found], self._buffer[found + len(end):]
        return taken

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._receive()
        taken, self._buffer = self._buffer[:size], self._buffer[size:]
        return taken

    def _to_the_end(self, most: int | None) -> bytes:
        assert self._socket is not None
        parts = [self._buffer]
        size = len(self._buffer)
        while chunk := self._socket.recv(READ):
            parts.append(chunk)
            size += len(chunk)
            if most is not None and size > most:
                raise TooLarge(f"an answer of more than {most} bytes")
        self._buffer = b""
        return b"".join(parts)

    def _receive(self) -> None:
        assert self._socket is not None
        chunk = self._socket.recv(READ)
        if not chunk:
            raise Disconnected("the server closed the connection before its answer ended"
                               if self._buffer else
                               "the server closed the connection without an answer")
        self._buffer += chunk


def encode(method: str, host: str, port: int, path: str, body: bytes | None,
           headers: Mapping[str, str] | None) -> bytes:
    """The request's bytes; ValueError for a path or header that would change the request's
    meaning on the wire (a space in the path, a control character anywhere). One string
    built and only what the caller gave checked: the load generator pays this per request."""
    head = f"{method} {path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
    given = method + path + host
    if body is not None:
        head += f"content-length: {len(body)}\r\n"
    if headers:
        for name, value in headers.items():
            head += f"{name}: {value}\r\n"
            given += name + value
    if " " in path or not given.isprintable():
        raise ValueError(f"refused to send a request line or header with a control "
                         f"character or a space in the path: {head!r:.200}")
    return (head + "\r\n").encode("latin-1") + (body or b"")
