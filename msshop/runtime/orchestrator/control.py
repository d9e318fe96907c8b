"""The supervisor's command socket: one JSON line in, one JSON line out, over 127.0.0.1.

Only callers that show the sandbox's token (in state.json, readable by its owner only) are
obeyed. Requests: {"token", "op", "service"?}; answers: {"ok": true, ...} or
{"ok": false, "error": "<one line>"}.
"""

from __future__ import annotations

import hmac
import json
import socket
from collections.abc import Callable
from typing import Any

from msshop.contracts.errors import SandboxError

MAX_LINE = 64 * 1024


class ControlServer:
    """The supervisor's side: a listening socket polled by the supervisor's select loop."""

    def __init__(self, token: str, host: str = "127.0.0.1") -> None:
        self.token = token
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.connection: socket.socket | None = None  # the one being answered, if any

    def fileno(self) -> int:
        return self.sock.fileno()

    def serve_one(self, handle: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
        """Accept one pending request and answer it. Returns False if none was pending."""
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        self.connection = conn
        try:
            conn.setblocking(True)
            conn.settimeout(2.0)
            request = _read_line(conn)
            if not isinstance(request, dict) or not hmac.compare_digest(
                    str(request.get("token", "")), self.token):
                answer: dict[str, Any] = {"ok": False, "error": "refused: wrong or missing token"}
            else:
                answer = handle(request)
            conn.sendall(json.dumps(answer).encode() + b"\n")
        except (OSError, ValueError):
            pass  # the caller went away or sent garbage; nothing to answer
        finally:
            self.connection = None
            conn.close()
        return True

    def close(self) -> None:
        self.sock.close()


def _read_line(conn: socket.socket) -> Any:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise ValueError("request too long")
    return json.loads(data)


def call(port: int, token: str, op: str, timeout: float, **args: Any) -> dict[str, Any]:
    """Send one command to the supervisor and return its answer (raises SandboxError)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(json.dumps({"token": token, "op": op, **args}).encode() + b"\n")
            answer = _read_line(conn)
    except (OSError, ValueError) as exc:
        raise SandboxError(
            f"the sandbox supervisor did not answer '{op}' on port {port} ({exc}); "
            "see its log with: msshop logs supervisor"
        ) from None
    if not isinstance(answer, dict):
        raise SandboxError(f"the sandbox supervisor gave a malformed answer to '{op}'")
    if not answer.get("ok"):
        raise SandboxError(str(answer.get("error", f"'{op}' failed")))
    return answer
