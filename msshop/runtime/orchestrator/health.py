"""Ask a part of the sandbox whether it is healthy: a service's GET /health, or a
nats-server's monitoring port, as the same kind of document.

One GET over a plain socket, HTTP/1.0, read to the end: `msshop status` asks every part
once and exits, and http.client (with the email parser it imports) would cost it ~10 ms
of a start that should take ~100. HTTP/1.0 keeps the answer simple for any server: no
chunks, no keep-alive, the end of the answer is the end of the connection.
"""

from __future__ import annotations

import json
import socket
from typing import Any

STREAM = "MSSHOP"  # as msshop.bus.jetstream names it (the runtime does not import the bus)
MOST = 16 * 1024 * 1024  # an answer bigger than this is not a health document


def get_json(host: str, port: int, path: str, timeout: float, any_status: bool = False
             ) -> dict[str, Any] | None:
    """The JSON object a 200 answer to GET `path` carries (`any_status`: whatever the
    status, as nats-server's /healthz says why it is unhealthy in a 503); None for anything
    else (no answer in time, another status, not a JSON object)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            chunks, size = [], 0
            while chunk := conn.recv(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > MOST:
                    return None
    except OSError:
        return None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if not status or (status != [b"200"] and not any_status):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def probe(host: str, port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    """The service's /health document, or None if it does not answer 200 in time."""
    return get_json(host, port, "/health", timeout)


def probe_nats(host: str, port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    """A node's health as a service's /health document, None if its monitoring port does
    not answer. "status" is "ok" once it can take the stream's work (JetStream up, in a
    cluster a meta leader known, every stream it keeps current: so a node restarted counts
    as ready once it has caught up), else "not ready" (nats.problem says why); with the
    stream's head and size as this node holds them."""
    healthz = get_json(host, port, "/healthz", timeout, any_status=True)
    if healthz is None:
        return None
    ready = healthz.get("status") == "ok"
    problem = "" if ready else str(healthz.get("error") or healthz.get("status"))
    jsz = get_json(host, port, "/jsz?streams=true", timeout) or {}
    varz = get_json(host, port, "/varz", timeout) or {}
    stream = next((s for account in jsz.get("account_details") or []
                   for s in account.get("stream_detail") or [] if s.get("name") == STREAM),
                  None)
    state = (stream or {}).get("state") or {}
    return {
        "service": "bus", "status": "ok" if ready else "not ready", "pid": None,
        "ready_at": None, "chaos": None,
        "db": (jsz.get("config") or {}).get("store_dir", ""),
        "rows": {"events": int(state.get("messages", 0))},
        "head": int(state.get("last_seq", 0)),
        "nats": {"server": varz.get("server_name", ""), "version": varz.get("version", ""),
                 "connections": varz.get("connections", 0),
                 "leader": ((stream or {}).get("cluster") or {}).get("leader", ""),
                 "problem": problem},
    }
