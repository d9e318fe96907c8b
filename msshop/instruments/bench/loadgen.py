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
# After a 2xx answer, the request that waits for the outcome it does not carry yet (a saga's
# purchase: GET its order until it is no longer pending), or None: the answer is the outcome
Follow = Callable[[bytes], tuple[str, str, bytes | None] | None]
# Whether an outcome counts as done (a saga's order confirmed), from its status and body
Judge = Callable[[int, bytes], bool]
JSON = {"content-type": "application/json"}


def succeeded(status: int, body: bytes) -> bool:
    return 200 <= status < 300


@dataclasses.dataclass
class Result:
    clients: int
    seconds: float
    confirmed: int  # outcomes that count (judge: 2xx answers unless told)
    failed: int  # any other answer, or a connection that broke
    latencies_ms: list[float]
    started_at: float = 0.0  # time.monotonic() when the first request was sent

    @property
    def per_second(self) -> float:
        return self.confirmed / self.seconds if self.seconds else 0.0


async def _client(client: Client, host: str, port: int, k: int, request: Request,
                  deadline: float, interval: float, offset: float, result: Result,
                  follow: Follow | None, judge: Judge) -> None:
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
            status, answer = await client.request(method, host, port, path, body, JSON)
            then = follow(answer) if follow is not None and 200 <= status < 300 else None
            if then is not None:
                method, path, sent = then
                status, answer = await client.request(method, host, port, path, sent, JSON)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            if judge(status, answer):
                result.confirmed += 1
            else:
                result.failed += 1
    except (ConnectFailed, OSError, ValueError):  # a broken connection ends this client
        result.failed += 1


async def _run(host: str, port: int, request: Request, clients: int, seconds: float,
               rate: float | None, follow: Follow | None, judge: Judge) -> Result:
    loop = asyncio.get_running_loop()
    result = Result(clients, 0.0, 0, 0, [], time.monotonic())
    interval = clients / rate if rate else 0.0
    started = loop.time()
    client = Client()
    try:
        await asyncio.gather(*(
            _client(client, host, port, k, request, started + seconds, interval,
                    k * interval / clients, result, follow, judge)
            for k in range(clients)))
    finally:
        client.close()
    result.seconds = loop.time() - started
    return result


def run(host: str, port: int, request: Request, clients: int, seconds: float,
        rate: float | None = None, follow: Follow | None = None,
        judge: Judge = succeeded) -> Result:
    """`clients` connections for `seconds`, as fast as the server answers, or paced to
    `rate` requests per second in all; with `follow`, each request's outcome is waited for
    on the same connection, and timed with it; `judge` says which outcomes count."""
    work = _run(host, port, request, clients, seconds, rate, follow, judge)
    try:
        import uvloop
    except ImportError:  # a plain asyncio loop measures the same, a little less cheaply
        return asyncio.run(work)
    return uvloop.run(work)
