"""A small closed-loop load generator for `msshop bench`.

Each client is one kept-alive HTTP/1.1 connection that sends its next request as soon as
the previous answer is read, or at its next slot when paced to a total rate. It speaks
just enough HTTP (status line, Content-Length) over asyncio streams, so a request costs
the generator a few microseconds: on two cores, a heavier client (16 threads of
http.client took a fifth of a core at 1,000 requests/s) would take CPU from the services
it measures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

Request = Callable[[int, int], tuple[str, str, bytes]]  # (client, n) -> method, path, body


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


def encode(host: str, method: str, path: str, body: bytes) -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


async def _client(host: str, port: int, k: int, request: Request, deadline: float,
                  interval: float, offset: float, result: Result) -> None:
    reader, writer = await asyncio.open_connection(host, port)
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
            writer.write(encode(host, *request(k, n)))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            if 200 <= status < 300:
                result.confirmed += 1
            else:
                result.failed += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        result.failed += 1
    finally:
        writer.close()


async def _run(host: str, port: int, request: Request, clients: int, seconds: float,
               rate: float | None) -> Result:
    loop = asyncio.get_running_loop()
    result = Result(clients, 0.0, 0, 0, [])
    interval = clients / rate if rate else 0.0
    started = loop.time()
    await asyncio.gather(*(
        _client(host, port, k, request, started + seconds, interval, k * interval / clients,
                result) for k in range(clients)))
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
