"""What the dashboard shows, gathered once per interval and handed to every tab (issue 28).

One task asks each part of the sandbox for its GET /health (the services' own client,
wire.py, kept-alive connections), every INTERVAL while at least one tab watches, and makes
one Snapshot of it. Every tab's stream waits for the next one: a tab more adds no request
to the services. A part that does not answer within TIMEOUT is down (red on the page).
Nobody watching: nothing is asked (a /health counts every table's rows).

Each look also carries the bus's newest events, as the feed (events.py) has read them, and
the read model's dead letters (dead_letters.py: asked of the query service when its count
changes).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from contextlib import suppress
from typing import Any

import msgspec

from msshop.contracts.status import InFlight
from msshop.runtime.platform.tasks import Task, Tasks
from msshop.runtime.platform.wire import Client, ConnectFailed, address_of
from msshop.runtime.services.dashboard.dead_letters import QUERY, DeadLetters, DeadLetterView
from msshop.runtime.services.dashboard.events import EventView, Feed
from msshop.runtime.services.dashboard.experiments import Runs, RunView
from msshop.runtime.services.dashboard.sagas import ORDERS, Sagas, SagaView

INTERVAL = 0.25  # seconds between two looks: the page is at most this (and a look) behind
TIMEOUT = 0.4  # a part that does not answer /health within this is down
FRESH = 1.0  # a snapshot this recent answers GET /state without a new look
KEPT_SECONDS = 120  # the replication history kept for a tab that opens (GET /history)


class PartView(msgspec.Struct):
    """One part as the page draws it."""

    name: str
    state: str  # up | degraded | down
    kind: str = "service"  # or nats-server (a node of a nats bus: its health alone)
    pid: int | None = None
    rows: dict[str, int] = {}  # its tables' rows (a service's own file)
    outbox: int | None = None  # its events not yet on the bus
    head: int | None = None  # the bus: its log's head
    position: int | None = None  # the query service: the bus position its model applied
    behind: int | None = None  # the query service: events on the bus not applied yet
    faults: list[str] = []  # what is injected into the requests it answers (msshop chaos)
    links: dict[str, str] = {}  # callee -> what is injected into its calls to it
    calls: dict[str, int] = {}  # callee -> the calls it made to it since it started
    in_flight: InFlight | None = None  # orders: the sagas not ended, by kind (and state)
    problems: list[str] = []  # why it is degraded, or why it is down


class Snapshot(msgspec.Struct):
    at: float  # unix seconds of the look
    parts: list[PartView]
    # the bus's events as they arrive (events.py): the newest, oldest first, while a tab
    # watches; the head as the feed last saw it; how many it skipped, arriving faster than
    # a page shows them; why it has nothing new (the bus is down), or None
    events: list[EventView] = []
    events_head: int | None = None
    events_dropped: int = 0
    events_problem: str | None = None
    # the read model's dead letters: how many, and the newest few (dead_letters.py)
    dead_letter_count: int = 0
    dead_letters: list[DeadLetterView] = []
    # the newest experiment run from the page, with its progress (experiments.py)
    experiment: RunView | None = None
    # the oldest sagas in flight, each with its step (sagas.py)
    sagas: list[SagaView] = []


encode = msgspec.json.Encoder().encode


def described(fault: dict[str, Any]) -> list[str]:
    """A /health's `chaos` (or one of its links) in the page's words: "+300 ms",
    "fails 50%", "partitioned" (every call fails)."""
    said = []
    latency, jitter = float(fault.get("latency_ms") or 0), float(fault.get("jitter_ms") or 0)
    if latency or jitter:
        said.append(f"+{latency:g} ms" + (f" (±{jitter:g})" if jitter else ""))
    error_rate = float(fault.get("error_rate") or 0)
    if error_rate >= 1:
        said.append("partitioned")
    elif error_rate:
        said.append(f"fails {error_rate:.0%}")
    for key, what in (("duplicate_rate", "duplicates"), ("reorder_rate", "reorders"),
                      ("redeliver_rate", "redelivers")):
        if rate := float(fault.get(key) or 0):
            said.append(f"{what} {rate:.0%}")
    return said


def view(name: str, health: dict[str, Any] | None, why: str | None = None) -> PartView:
    """A part from its /health answer (None: it did not answer, for `why`)."""
    if health is None:
        return PartView(name, "down", problems=[why or "no answer"])
    consumer = health.get("consumer") or {}
    outbox = health.get("outbox") or {}
    rows = health.get("rows")
    chaos: dict[str, Any] = _mapping(health.get("chaos"))  # None: nothing injected
    links = _mapping(chaos.get("links"))
    return PartView(
        name, "degraded" if health.get("status") == "degraded" else "up",
        pid=health.get("pid"),
        rows={str(k): int(v) for k, v in rows.items()} if isinstance(rows, dict) else {},
        outbox=outbox.get("pending"), head=health.get("head"),
        position=consumer.get("position"), behind=consumer.get("behind"),
        faults=described(chaos),
        links={str(callee): ", ".join(described(fault)) for callee, fault in links.items()
               if isinstance(fault, dict)},
        calls={str(callee): int(n) for callee, n in _mapping(health.get("calls")).items()},
        in_flight=_in_flight(health.get("in_flight")),
        problems=[str(p) for p in health.get("problems") or []])


def replication(snapshot: Snapshot) -> tuple[float, int, int]:
    """A look's point of the history: the events waiting in every outbox, and how far
    the read model is behind the bus."""
    waiting = sum(part.outbox or 0 for part in snapshot.parts)
    behind = next((part.behind or 0 for part in snapshot.parts if part.name == "query"), 0)
    return snapshot.at, waiting, behind


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _in_flight(value: Any) -> InFlight | None:
    """orders' sagas in flight, as it says them (None: it says nothing of them: a program
    of your own, or an older orders)."""
    try:
        return msgspec.convert(value, InFlight) if value is not None else None
    except msgspec.ValidationError:
        return None


class Gatherer:
    """The looks, and the tabs that wait for them."""

    def __init__(self, peers: dict[str, str], tasks: Tasks,
                 monitors: dict[str, str] | None = None, feed: Feed | None = None,
                 dead_letters: DeadLetters | None = None, runs: Runs | None = None,
                 sagas: Sagas | None = None) -> None:
        self._peers = {name: address_of(url) for name, url in sorted(peers.items())}
        # a nats bus's nodes: their monitoring port's /healthz (they speak no msshop HTTP)
        self._monitors = {name: address_of(url)
                          for name, url in sorted((monitors or {}).items())}
        self._tasks = tasks
        self._client = Client()
        self.feed = feed
        self._dead_letters = dead_letters or DeadLetters(None)
        self._runs = runs
        self._sagas = sagas or Sagas(None)
        self._query_health: dict[str, Any] | None = None  # its last /health, this look
        self.latest: Snapshot | None = None
        self._encoded: tuple[Snapshot, bytes] | None = None  # the latest look, as JSON
        # (at, events waiting in the outboxes, the read model behind the bus), a point a
        # look: what a tab opened now draws first, as the tabs before it saw it
        self.history: deque[tuple[float, int, int]] = deque(
            maxlen=int(KEPT_SECONDS / INTERVAL) + 1)
        self._changed = asyncio.Event()
        self.watching = 0
        self._task: Task | None = None
        self.closing = False

    async def start(self) -> None:
        self._task = self._tasks.run("gather", self._run)
        if self.feed is not None:
            await self.feed.start()

    async def close(self) -> None:
        self.release()
        if self._task is not None:
            await self._task.stop()
        if self.feed is not None:
            await self.feed.close()
        self._client.close()

    def release(self) -> None:
        """The dashboard stops: every stream ends now, not at the server's deadline."""
        self.closing = True
        self._changed.set()

    async def look(self) -> Snapshot:
        answers = await asyncio.gather(
            *(self._health(name, host, port) for name, (host, port) in self._peers.items()),
            *(self._node(name, host, port) for name, (host, port) in self._monitors.items()))
        if QUERY in self._peers:
            host, port = self._peers[QUERY]
            await self._dead_letters.update(
                self._query_health,
                lambda path, headers: self._ask(host, port, path, headers=headers))
        orders = next((part for part in answers if part.name == ORDERS), None)
        await self._sagas.update(orders.in_flight if orders is not None else None,
                                 self._ask_part, time.time())
        feed, dead = self.feed, self._dead_letters
        snapshot = Snapshot(
            time.time(), list(answers),
            events=feed.newest() if feed is not None else [],
            events_head=feed.head if feed is not None else None,
            events_dropped=feed.dropped if feed is not None else 0,
            events_problem=feed.problem if feed is not None else None,
            dead_letter_count=dead.count, dead_letters=dead.newest,
            sagas=self._sagas.shown,
            experiment=self._runs.latest() if self._runs is not None else None)
        self.latest = snapshot
        self.history.append(replication(snapshot))
        while self.history and self.history[0][0] < snapshot.at - KEPT_SECONDS:
            self.history.popleft()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return snapshot

    def encoded(self, snapshot: Snapshot) -> bytes:
        """A look as JSON, made once however many tabs it is handed to."""
        if self._encoded is None or self._encoded[0] is not snapshot:
            self._encoded = (snapshot, encode(snapshot))
        return self._encoded[1]

    async def current(self) -> Snapshot:
        """The latest look if it is fresh, else a new one (GET /state with no tab open)."""
        if self.latest is not None and time.time() - self.latest.at < FRESH:
            return self.latest
        return await self.look()

    async def next(self, after: Snapshot | None) -> Snapshot | None:
        """The first look newer than `after` (None: the dashboard is stopping)."""
        while not self.closing:
            if self.latest is not None and self.latest is not after:
                return self.latest
            await self._changed.wait()
        return None

    async def _run(self) -> None:
        while True:
            if self.watching:
                await self.look()
            await asyncio.sleep(INTERVAL)

    async def _health(self, name: str, host: str, port: int) -> PartView:
        answer = await self._ask(host, port, "/health")
        if name == QUERY:
            self._query_health = answer if isinstance(answer, dict) else None
        if isinstance(answer, str):
            return view(name, None, answer)
        return view(name, answer)

    async def _node(self, name: str, host: str, port: int) -> PartView:
        """A nats-server node: up when its /healthz says ok (503 with why, otherwise)."""
        answer = await self._ask(host, port, "/healthz", any_status=True)
        if isinstance(answer, str):
            return PartView(name, "down", kind="nats-server", problems=[answer])
        if answer.get("status") == "ok":
            return PartView(name, "up", kind="nats-server")
        return PartView(name, "degraded", kind="nats-server",
                        problems=[str(answer.get("error") or answer.get("status"))])

    async def _ask_part(self, name: str, method: str, path: str, body: bytes | None,
                        headers: dict[str, str]) -> dict[str, Any] | str:
        if name not in self._peers:
            return "is not in this sandbox"
        host, port = self._peers[name]
        return await self._ask(host, port, path, method=method, body=body,
                               headers={**headers, "content-type": "application/json"}
                               if body is not None else headers)

    async def _ask(self, host: str, port: int, path: str, any_status: bool = False,
                   headers: dict[str, str] | None = None, method: str = "GET",
                   body: bytes | None = None) -> dict[str, Any] | str:
        """The JSON document a part answers, or why there is none."""
        try:
            async with asyncio.timeout(TIMEOUT):
                status, answered = await self._client.request(method, host, port, path,
                                                              body, headers=headers)
        except (ConnectFailed, OSError):
            return "not running (connection refused)"
        except TimeoutError:
            return f"no answer within {TIMEOUT * 1000:.0f} ms"
        answer: Any = None
        with suppress(ValueError):
            answer = json.loads(answered)
        if (status != 200 and not any_status) or not isinstance(answer, dict):
            return f"answered {status}"
        return answer
