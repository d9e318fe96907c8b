"""The CLI's way into a running sandbox: the standard library's HTTP client, one kept-alive
connection per service. No server stack is imported, so commands start fast.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

from msshop.contracts.errors import SandboxError, ServiceError
from msshop.runtime.orchestrator.state import State


class ShopClient:
    def __init__(self, state: State, timeout: float = 30.0) -> None:
        self.state = state
        self.timeout = timeout
        self._connections: dict[str, http.client.HTTPConnection] = {}

    def request(self, service: str, method: str, path: str, body: Any = None) -> Any:
        """The decoded JSON answer; errors become SandboxError (down) or ServiceError (4xx/5xx)."""
        status, data = self.exchange(service, method, path, body)
        if status >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            raise ServiceError(message or f"{service} answered HTTP {status}", status)
        return data

    def exchange(self, service: str, method: str, path: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, decoded JSON) without judging the status."""
        payload = None if body is None else json.dumps(body).encode()
        headers = dict(headers or {})
        if payload is not None:
            headers["content-type"] = "application/json"
        for _ in (1, 2):  # a kept-alive connection may have been closed by the server
            reused = service in self._connections
            conn = self._connection(service)
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                conn.close()
                self._connections.pop(service, None)
                stale = reused and isinstance(
                    exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError)
                if not stale:
                    raise self._down(service, exc) from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = {"error": raw[:200].decode(errors="replace")}
        return response.status, data

    def _connection(self, service: str) -> http.client.HTTPConnection:
        conn = self._connections.get(service)
        if conn is None:
            port = self.state.services[service].port
            conn = http.client.HTTPConnection(self.state.host, port, timeout=self.timeout)
            self._connections[service] = conn
        return conn

    def _down(self, service: str, exc: Exception) -> SandboxError:
        info = self.state.services[service]
        if isinstance(exc, TimeoutError):
            return SandboxError(f"{service} did not answer within {self.timeout:g} s at "
                                f"{info.url}; see: msshop logs {service}")
        return SandboxError(f"{service} is not answering at {info.url} ({exc}); "
                            f"check with: msshop status, start it with: msshop start {service}")

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()
