"""The door itself: a TCP proxy between a program of your own and the NATS nodes.

What the program sends goes to the server as it is. What the server sends is cut into
frames (frames.py): INFO loses the cluster's other addresses, and while the reader's link
has a delivery fault, the stream deliveries are gathered into pages and handed as the log
bus hands its pages (links.py's Misdelivery, the same object, the same words): a page is
what arrived together (a woken fetch's burst; with a reorder, what arrived within
REORDER_GATHER of its first delivery), handed before the next frame that is not a
delivery. Every other frame passes at once. Each delivery handed out of the ordinary goes
into the reader's journal.

A page's deliveries are re-emitted as the fetch that carries the page's last: its
subscription and consumer, and a pending count of at least 1 but for the last, so that a
reader that ends its page where the stream did (pending 0) ends it where the page does,
as on the log.

A partition (error rate 1) closes the reader's connections at once and every new one as
it arrives: the reader sees the bus gone, as a node gone. Latency holds each burst of
deliveries. With several nodes, each connection goes to the first that answers, starting
from the one that answered last: a node down is passed over, and the reader, which only
ever sees the door, reads on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

import msgspec

from msshop.contracts.status import LinkFault
from msshop.runtime.platform.journal import DeliveryJournals
from msshop.runtime.platform.links import (
    REORDER_GATHER,
    Doors,
    Misdelivery,
    delivery_faults,
    envelope_of,
)
from msshop.runtime.platform.tasks import Task
from msshop.runtime.services.bus_door.frames import (
    Delivery,
    FrameReader,
    ProtocolError,
    delivery,
    without_other_servers,
)

log = logging.getLogger(__name__)
CHUNK = 256 * 1024
CONNECT_TIMEOUT = 1.0  # per node: a node down refuses at once, a hung one is passed over


def delivered_aggregate(item: Delivery) -> tuple[str, int] | None:
    try:
        envelope = envelope_of(item.frame.payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # not an event (a poison): nobody's update
    return envelope.aggregate_type, envelope.aggregate_id


class NoNode(Exception):
    """No node of the bus could be reached (one line: which, and why)."""


class Nodes:
    """The nats-server nodes behind the door, tried in turn from the last that answered."""

    def __init__(self, servers: list[str]) -> None:
        self.addresses = [(url.hostname or "127.0.0.1", url.port or 4222)
                          for url in map(urlsplit, servers)]
        self.first = 0

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        failed = []
        for step in range(len(self.addresses)):
            index = (self.first + step) % len(self.addresses)
            host, port = self.addresses[index]
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    reader, writer = await asyncio.open_connection(host, port, limit=CHUNK)
            except TimeoutError:
                failed.append(f"{host}:{port} (no answer within {CONNECT_TIMEOUT:g} s)")
                continue
            except OSError as exc:
                failed.append(f"{host}:{port} ({exc.strerror or exc})")
                continue
            self.first = index
            return reader, writer, f"{host}:{port}"
        raise NoNode("no NATS node answers: " + ", ".join(failed))


class ReaderDoor:
    """The door of one reader (a program of your own): its connections, and what its
    delivery faults hold between pages (kept across its connections, as the log bus keeps
    them per reader)."""

    def __init__(self, reader: str, port: int, doors: Doors, nodes: Nodes,
                 journals: DeliveryJournals, rng: random.Random | None = None) -> None:
        self.reader = reader
        self.port = port
        self.doors = doors
        self.nodes = nodes
        self.journals = journals
        self._random = rng or random.Random()
        self.held: Misdelivery[Delivery] = Misdelivery(delivered_aggregate, self._random)
        self.held_stream = b""  # the stream the held deliveries are from: never mix two
        self.connections: set[asyncio.StreamWriter] = set()
        self.upstream = ""  # the node the last connection went to
        self.task: Task | None = None  # its listener's, under the process's supervisor
        doors.watch(self._changed)

    def fault(self) -> LinkFault | None:
        return self.doors.fault(self.reader) if self.doors.faulty else None

    def _changed(self, caller: str) -> None:
        if caller != self.reader:
            return
        fault = self.fault()
        if fault is None or not delivery_faults(fault):
            self.held.clear()  # cleared: what was held is not handed over any more
        if fault is not None and fault["error_rate"] >= 1:
            for writer in list(self.connections):  # a partition: gone at once
                writer.close()

    def health(self) -> dict[str, object]:
        return {"port": self.port, "connections": len(self.connections),
                "node": self.upstream or None}

    async def serve(self, client_in: asyncio.StreamReader,
                    client_out: asyncio.StreamWriter) -> None:
        """One connection of the reader, until either side ends it."""
        self.connections.add(client_out)
        server_out: asyncio.StreamWriter | None = None
        try:
            refused = await self.doors.cross(self.port)  # its latency, or a refusal
            if refused is not None:
                return
            server_in, server_out, self.upstream = await self.nodes.connect()
            if self.task is not None:
                self.task.recovered()
            await either(pipe(client_in, server_out), self.downward(server_in, client_out))
        except NoNode as exc:
            if self.task is not None:  # /health says so while it lasts
                self.task.failed(str(exc))
        except ProtocolError as exc:
            log.warning("the door for %s: the server sent %s; connection closed",
                        self.reader, exc)
        except OSError:
            pass  # either side went away: the reader connects again
        finally:
            self.connections.discard(client_out)
            for writer in (client_out, server_out):
                if writer is not None:
                    writer.close()

    async def downward(self, server_in: asyncio.StreamReader,
                       client_out: asyncio.StreamWriter) -> None:
        """Server -> reader: frame by frame, deliveries paged while a delivery fault
        holds."""
        frames = FrameReader()
        page: list[Delivery] = []
        gathered_until = 0.0
        loop = asyncio.get_running_loop()
        while True:
            fault = self.fault()
            faulty = fault is not None and delivery_faults(fault)
            reorder = faulty and fault is not None and bool(fault.get("reorder_rate"))
            data: bytes | None
            try:
                if page and reorder:  # a reorder's page: what arrives within its gathering
                    async with asyncio.timeout_at(gathered_until):
                        data = await server_in.read(CHUNK)
                else:
                    data = await server_in.read(CHUNK)
            except TimeoutError:
                data = None  # the gathering is over: hand the page
            if data == b"":
                return  # the server closed (a node stopped): the reader connects again
            out: list[bytes] = []
            for frame in frames.feed(data or b""):
                found = delivery(frame) if faulty else None
                if found is not None:
                    if not page:
                        gathered_until = loop.time() + REORDER_GATHER
                    page.append(found)
                    continue
                if page:
                    out.append(self.hand(page, fault))
                    page = []
                out.append(without_other_servers(frame))
            if page and not (reorder and data is not None):
                out.append(self.hand(page, fault))
                page = []
            if not out:
                continue
            if fault is not None and (fault["latency_ms"] or fault["jitter_ms"]):
                jitter = fault["jitter_ms"]
                await asyncio.sleep((fault["latency_ms"] + (
                    self._random.uniform(0, jitter) if jitter else 0)) / 1000)
            client_out.write(b"".join(out))
            await client_out.drain()

    def hand(self, page: list[Delivery], fault: LinkFault | None) -> bytes:
        """The page as Misdelivery hands it, each delivery as the page's last fetch's."""
        last = page[-1]
        if last.stream != self.held_stream:  # another stream (a new log): forget the old
            self.held.clear()
            self.held_stream = last.stream
        odd: list[tuple[Delivery, str]] = []
        if fault is not None and delivery_faults(fault):
            page, odd = self.held.handed(page, fault)
        if odd:
            self.journals.note(self.reader, ((item.position, item.frame.payload, how)
                                             for item, how in odd))
        sid, consumer = last.frame.args[1], last.tokens[last.at + 1]
        return b"".join(
            item.handed(sid, consumer, None if item is last or item.pending else b"1")
            for item in page)


async def either(*work: Coroutine[Any, Any, None]) -> None:
    """Both directions of a connection, until one ends (the other is then cancelled);
    what ended it raised again."""
    tasks = [asyncio.create_task(each) for each in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and (failed := task.exception()) is not None:
            raise failed


async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Reader -> server, as it is."""
    while data := await source.read(CHUNK):
        sink.write(data)
        await sink.drain()
    with contextlib.suppress(OSError):
        sink.write_eof()
