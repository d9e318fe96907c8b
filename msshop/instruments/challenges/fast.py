"""Rung 10: replicated answers at a steady read rate, their p50 and p99 held to limits and
shown beside msshop's own query service's, measured on the same machine in the same run."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from typing import TypedDict

from msshop.instruments.challenges.arena import Arena, Judged
from msshop.instruments.challenges.findings import Finding
from msshop.instruments.challenges.replicas import CATCH_UP, applied_head
from msshop.instruments.challenges.sandbox import RUN_IT_YOURSELF, own_sandbox, seed
from msshop.instruments.checking import caught_up
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator.state import State
from msshop.runtime.platform.wire import Client, ConnectFailed

RATE = 500.0  # reads per second, sent on schedule (open loop: a slow answer delays none)
P50_MS = 5.0
P99_MS = 100.0
TIMEOUT = 2.0  # a read unanswered this long counts as refused
CHECK = "fast"


class Figures(TypedDict):
    reads: int
    refused: int
    refusals: dict[str, int]  # by what came back: "HTTP 404", "no answer"
    p50_ms: float | None
    p99_ms: float | None


def fast(arena: Arena) -> Judged:
    judged = Judged(checked=[f"replicated reads at {RATE:g}/s for {arena.seconds:g} s: "
                             f"p50 ≤ {P50_MS:g} ms, p99 ≤ {P99_MS:g} ms, none refused"])
    if not applied_head(arena, judged, CHECK):  # every user: reads, not 404s
        return judged
    yours = measure(arena.state, list(arena.cast.users), arena.seconds)
    judged.figures["yours"] = yours
    if "query" in arena.settings.commands:
        arena.say("measuring msshop's own query service the same way, for comparison")
        judged.figures["msshop"] = _msshop_own(arena)
    else:
        judged.figures["msshop"] = yours  # this run's service is msshop's own
    subject = f"{yours['reads']} reads at {RATE:g}/s"
    if yours["refused"]:
        judged.findings.append(Finding(
            CHECK, subject, "every read answered", f"{yours['refused']} refused or "
            f"unanswered within {TIMEOUT:g} s", "did it crash or hang, or refuse "
            "connections under the load (a listen backlog too small: Python's socketserver "
            f"keeps 5)? {RUN_IT_YOURSELF}",
            "what came back: " + ", ".join(f"{what}: {times}" for what, times
                                           in sorted(yours["refusals"].items()))))
    for name, took, limit in (("p50", yours["p50_ms"], P50_MS),
                              ("p99", yours["p99_ms"], P99_MS)):
        if took is not None and took > limit:
            judged.findings.append(Finding(
                CHECK, subject, f"{name} ≤ {limit:g} ms", f"{name} {took:g} ms",
                "is the lookup indexed, and the connection opened once, not per request?",
                _beside(judged.figures)))
    return judged


def _beside(figures: dict[str, Figures]) -> str:
    own = figures["msshop"]
    return f"msshop's own query service: p50 {own['p50_ms']} ms, p99 {own['p99_ms']} ms"


def _msshop_own(arena: Arena) -> Figures:
    commands = {k: v for k, v in arena.settings.commands.items() if k != "query"}
    with own_sandbox(dataclasses.replace(arena.settings, commands=commands),
                     "fast-msshop") as (_, state):
        client = ShopClient(state, timeout=30)
        try:
            cast = seed(client)
            caught_up(client, CATCH_UP)
        finally:
            client.close()
        return measure(state, list(cast.users), arena.seconds)


def measure(state: State, users: list[int], seconds: float) -> Figures:
    """Replicated answers of `users` in turn at RATE per second for `seconds`."""
    query = state.services["query"]
    return asyncio.run(_measure(state.host, query.port, users, seconds))


async def _measure(host: str, port: int, users: list[int], seconds: float) -> Figures:
    client = Client()
    took: list[float] = []
    refusals: Counter[str] = Counter()

    async def read(n: int) -> None:
        path = f"/user-orders/{users[n % len(users)]}?strategy=replicated"
        began = time.perf_counter()
        try:
            async with asyncio.timeout(TIMEOUT):
                status, _ = await client.request("GET", host, port, path)
        except (ConnectFailed, TimeoutError, OSError):
            refusals["no answer"] += 1
            return
        if status != 200:
            refusals[f"HTTP {status}"] += 1
            return
        took.append((time.perf_counter() - began) * 1000)

    try:
        for n in range(len(users)):  # warm: the first answer of each may load it
            await read(n)
        took.clear()
        refusals.clear()
        loop = asyncio.get_running_loop()
        started = loop.time()
        tasks = []
        n = 0
        while (at := n / RATE) < seconds:
            await asyncio.sleep(max(0.0, started + at - loop.time()))
            tasks.append(asyncio.create_task(read(n)))
            n += 1
        await asyncio.gather(*tasks)
    finally:
        client.close()
    ordered = sorted(took)
    return {"reads": n, "refused": sum(refusals.values()), "refusals": dict(refusals),
            "p50_ms": _at(ordered, 0.5), "p99_ms": _at(ordered, 0.99)}


def _at(ordered: list[float], share: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 2)

