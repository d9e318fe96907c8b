"""Ask a service whether it is healthy: GET /health with the standard library's client."""

from __future__ import annotations

import http.client
import json
from typing import Any


def probe(host: str, port: int, timeout: float = 1.0) -> dict[str, Any] | None:
    """The service's /health document, or None if it does not answer 200 in time."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        data: dict[str, Any] = json.loads(body)
        return data
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()
