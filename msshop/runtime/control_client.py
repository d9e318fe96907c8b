"""The client of the supervisor's control socket (runtime/orchestrator/control.py is its
server): one JSON line with the sandbox's token and the command, one JSON line back. Used
by the CLI (lifecycle.py) and by the dashboard's buttons (services/dashboard/actions.py),
which is why it stands apart from the server: a service never imports the orchestrator.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from msshop.contracts.errors import SandboxError

MAX_LINE = 64 * 1024  # bytes of one request, newline excluded


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
