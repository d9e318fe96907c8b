"""Ask a part of the sandbox whether it is healthy: a service's GET /health, or a
nats-server's monitoring port, as the same kind of document.

One GET on a connection of its own (runtime/http1.py, the sync side's client: standard
library only, so `msshop status` starts as fast as with a bare socket), closed once read.
"""

from __future__ import annotations

import json
from typing import Any

from msshop.runtime.http1 import Connection

MOST = 16 * 1024 * 1024  # an answer bigger than this is not a health document


def get_json(host: str, port: int, path: str, timeout: float, any_status: bool = False
             ) -> dict[str, Any] | None:
    """The JSON object a 200 answer to GET `path` carries (`any_status`: whatever the
    status, as nats-server's /healthz says why it is unhealthy in a 503); None for anything
    else (no answer in time, another status, not a JSON object)."""
    answer = json_or_why(host, port, path, timeout, any_status)
    return answer if isinstance(answer, dict) else None


def json_or_why(host: str, port: int, path: str, timeout: float, any_status: bool = False
                ) -> dict[str, Any] | str:
    """get_json's document, or why there is none, in a few words ("connection refused",
    "connection reset", "no answer within 1 s", "answered 503"): a process that runs but
    does not answer is told from one that is gone."""
    try:
        with Connection(host, port, timeout) as connection:
            status, body = connection.request("GET", path, most=MOST)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except ConnectionRefusedError:
        return "connection refused"
    except (ConnectionResetError, BrokenPipeError):  # http1.Disconnected is a reset too
        return "connection reset"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    except ValueError:
        return "not an HTTP answer"
    if status != 200 and not any_status:
        return f"answered {status}"
    try:
        data = json.loads(body)
    except ValueError:
        return "answered something other than JSON"
    return data if isinstance(data, dict) else "answered something other than a JSON object"


def probe(host: str, port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    """The service's /health document, or None if it does not answer 200 in time."""
    return get_json(host, port, "/health", timeout)


def probe_or_why(host: str, port: int, timeout: float = 1.0) -> dict[str, Any] | str:
    """The service's /health document, or why it did not come (json_or_why)."""
    return json_or_why(host, port, "/health", timeout)


def probe_nats(host: str, port: int, timeout: float = 1.0, stream: str = ""
               ) -> dict[str, Any] | None:
    """A node's health as a service's /health document, None if its monitoring port does
    not answer. "status" is "ok" once it can take the stream's work (JetStream up, in a
    cluster a meta leader known, every stream it keeps current: so a node restarted counts
    as ready once it has caught up), else "not ready" (nats.problem says why); with the
    stream's head and size as this node holds them (`stream`: the sandbox's)."""
    healthz = get_json(host, port, "/healthz", timeout, any_status=True)
    if healthz is None:
        return None
    ready = healthz.get("status") == "ok"
    problem = "" if ready else str(healthz.get("error") or healthz.get("status"))
    jsz = get_json(host, port, "/jsz?streams=true", timeout) or {}
    varz = get_json(host, port, "/varz", timeout) or {}
    found = next((s for account in jsz.get("account_details") or []
                  for s in account.get("stream_detail") or [] if s.get("name") == stream),
                 None)
    state = (found or {}).get("state") or {}
    return {
        "service": "bus", "status": "ok" if ready else "not ready", "pid": None,
        "ready_at": None, "chaos": None,
        "db": (jsz.get("config") or {}).get("store_dir", ""),
        "rows": {"events": int(state.get("messages", 0))},
        "head": int(state.get("last_seq", 0)),
        "nats": {"server": varz.get("server_name", ""), "version": varz.get("version", ""),
                 "connections": varz.get("connections", 0),
                 "leader": ((found or {}).get("cluster") or {}).get("leader", ""),
                 "problem": problem},
    }
