"""A small closed-loop load generator for `msshop bench`.

Each client sends its next request as soon as the previous answer is read, or at its next
slot when paced to a total rate, on a kept-alive HTTP/1.1 connection. The requests go
through the services' own client (runtime/platform/wire.py: one bytes object written, the
answer parsed by httptools), so a request costs the generator about ten microseconds of
CPU: on two cores, a heavier client (16 threads of http.client took a fifth of a core at
1,000 requests/s) would take CPU from the services it measures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from msshop.runtime.platform.wire import Client, ConnectFailed

Request = Callable[[int, int], tuple[str, str, bytes]]  # (client, n) -> method, path, body
JSON = {"content-type": "application/json"}


@dataclasses.dataclass
class Result:
    clients: int
    seconds: float
    confirmed: int  # 2xx answers
    failed: int  # any other answer, or a connection that broke
    latencies_ms: list[float]

    @property
    def per_second(self) -> float:
        return self.confirmed / self.seconds if self.seconds else 0.0


async def _client(client: Client, host: str, port: int, k: int, request: Request,
                  deadline: float, interval: float, offset: float, result: Result) -> None:
    loop = asyncio.get_running_loop()
    next_at = loop.time() + offset
    n = 0
    try:
        while (now := loop.time()) < deadline:
            if interval:
                if now < next_at:
                    await asyncio.sleep(next_at - now)
                next_at += interval
            n += 1
            started = time.perf_counter()
            method, path, body = request(k, n)
            status, _ = await client.request(method, host, port, path, body, JSON)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            if 200 <= status < 300:
                result.confirmed += 1
            else:
                result.failed += 1
    except (ConnectFailed, OSError, ValueError):  # a broken connection ends this client
        result.failed += 1


async def _run(host: str, port: int, request: Request, clients: int, seconds: float,
               rate: float | None) -> Result:
    loop = asyncio.get_running_loop()
    result = Result(clients, 0.0, 0, 0, [])
    interval = clients / rate if rate else 0.0
    started = loop.time()
    client = Client()
    try:
        await asyncio.gather(*(
            _client(client, host, port, k, request, started + seconds, interval,
                    k * interval / clients, result) for k in range(clients)))
    finally:
        client.close()
    result.seconds = loop.time() - started
    return result


def run(host: str, port: int, request: Request, clients: int, seconds: float,
        rate: float | None = None) -> Result:
    """`clients` connections for `seconds`, as fast as the server answers, or paced to
    `rate` requests per second in all."""
    try:
        import uvloop
    except ImportError:  # a plain asyncio loop measures the same, a little less cheaply
        return asyncio.run(_run(host, port, request, clients, seconds, rate))
    return uvloop.run(_run(host, port, request, clients, seconds, rate))
