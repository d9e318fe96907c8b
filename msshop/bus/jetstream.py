"""The bus on NATS JetStream: the same interface, on a real, widely used distributed log.

How each operation maps onto JetStream (docs/ARCHITECTURE.md draws it):

    append   publish each event to `msshop.<sandbox>.<source>.<type>` (contracts/
             streams.py names them), its id as the de-duplication id (Nats-Msg-Id
             "<source>.<id>"); the stream's ack gives the position (its sequence), and for
             a repeat inside the window the first one's
    read     an ordered consumer (ephemeral, in memory, no acks) started at `after + 1`; it
             is kept while reads go on from where the last one ended, and made anew when
             someone asks for another position. The reader's position lives in its own
             file (the consumer offsets table), never on the server
    head     the stream's last sequence (STREAM.INFO)
    log      the stream's name and creation time: a stream deleted and made again is
             another log, and a read model built from the old one says so

Every name is the sandbox's own: its stream (msshop-<identity>, or bus.stream) takes only
its subjects, so two sandboxes on one server never see each other's events. A service
publishes only to its own subjects, and only the types it owns (the server's permissions
say so), so the subject a message arrived on names who sent it: a read hands it over as
the event's `sender`, and the consumer dead-letters an event whose `source` says
otherwise. The stream is made by whoever first finds it missing, with the settings in
`NatsAddress` and the sandbox's identity in its metadata; one found is used only if it is
this sandbox's and has the shape msshop needs (`stream_problem`), else StreamRefused says
why. The nats package is imported only when this bus is used.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from msshop.bus.interface import BusUnavailable, Page
from msshop.contracts import streams
from msshop.contracts.events import Delivered

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
    from nats.js.client import JetStreamContext

log = logging.getLogger("msshop.bus")

HIGH_WATER = 20_000  # events held by a reader before the server is told to wait
DELIVERY_GRACE = 5.0  # seconds to wait for events the stream is known to hold
# When the connection drops, the client tries each server once more (in a cluster: the other
# nodes), then gives up; the next call connects anew. Retrying longer is the callers' part
# (the relay and the consumer back off), so that no call waits on a server that is gone.
RECONNECT_ATTEMPTS = 1
RECONNECT_WAIT = 0.05  # seconds


def import_nats() -> None:
    """Import the NATS client (the supervisor does, before it forks, so the services start
    warm: 32 ms). Its websocket transport imports aiohttp if it can, 0.1 s more; msshop
    speaks nats:// only, so where aiohttp is not loaded already (the CLI) it is kept out,
    which nats-py supports."""
    if "nats.js.api" in sys.modules:
        return
    blocked = "aiohttp" not in sys.modules
    if blocked:
        sys.modules["aiohttp"] = None  # type: ignore[assignment]  # "import aiohttp" fails
    try:
        for module in ("nats", "nats.js", "nats.js.api", "nats.js.errors"):
            importlib.import_module(module)
    finally:
        if blocked:
            del sys.modules["aiohttp"]


@dataclass(frozen=True)
class NatsAddress:
    """Where the stream is and who is asking: what a service or the CLI needs to reach it."""

    servers: tuple[str, ...]  # nats://host:port, any node of a cluster
    sandbox: str  # whose events: the sandbox's identity names its subjects (streams.py)
    stream: str  # the sandbox's stream
    user: str = ""
    password: str = ""
    replicas: int = 1  # copies of the stream (a three-node cluster keeps three)
    dedup_window: float = 120.0  # seconds JetStream remembers an event id
    timeout: float = 2.0  # seconds to wait for the server's answer
    inbox: str = "_INBOX"  # reply subjects; each service has its own (permissions)


class StreamRefused(BusUnavailable):
    """The server has a stream by this sandbox's stream's name that is not fit to use: made
    for another sandbox, or of another shape. Using it would mix or lose events."""


class _Header(msgspec.Struct):
    """What the bus reads of an event: who sent it, its type and id (the rest is carried as
    is). Source and type are tokens of its subject: plain names only."""

    id: str
    source: str
    type: str


_header = msgspec.json.Decoder(_Header)


class JetStreamBus:
    def __init__(self, address: NatsAddress, name: str) -> None:
        self.address = address
        self.name = name  # how this client shows in the server's connection list
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._connecting = asyncio.Lock()
        self._reading = asyncio.Lock()
        self._reader: _Reader | None = None
        self._problem: str | None = None  # the server's last complaint, for error messages
        self._lost = False  # the connection dropped; the client is reconnecting
        self._closing = False  # close() is closing the connection on purpose

    async def start(self) -> None:
        """Nothing to do at once: the connection is made at first use, so a service starts
        while the broker is down (its relay retries, as with the sandbox's log)."""

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            # close, not drain: every publish was awaited, and a drain would wait (up to
            # 30 s) for what the reader was sent and nobody will read
            self._closing = True  # the disconnection that follows is ours: not a loss
            try:
                await nc.close()
            finally:
                self._closing = False

    # --- the interface ----------------------------------------------------------------------

    async def append(self, events: Sequence[bytes]) -> list[int]:
        from nats.errors import Error as NatsError
        from nats.js.errors import NoStreamResponseError

        if not events:
            return []
        if self._lost:
            raise BusUnavailable(self._say("bus is down: lost the connection to NATS"))
        js = await self._jetstream()
        futures = []
        try:
            for body in events:
                try:
                    header = _header.decode(body)
                except msgspec.DecodeError as exc:
                    raise BusUnavailable(f"not an event, not sent: {exc}") from None
                if not (streams.NAME.fullmatch(header.source)
                        and streams.NAME.fullmatch(header.type)):
                    raise BusUnavailable(
                        f"not sent: an event's source and type are names (letters, digits, "
                        f"- and _), not {header.source!r} and {header.type!r}")
                futures.append(await js.publish_async(
                    streams.subject(self.address.sandbox, header.source, header.type), body,
                    headers={"Nats-Msg-Id": f"{header.source}.{header.id}"}))
            async with asyncio.timeout(self.address.timeout):
                acks = await asyncio.gather(*futures)
        except TimeoutError:
            problem, self._problem = self._problem, None
            if problem and "violation" in problem.lower():  # the server dropped them
                raise BusUnavailable(f"NATS refused the events: {problem}") from None
            raise BusUnavailable(
                f"NATS did not confirm the events within {self.address.timeout:g} s"
                + (f" ({problem})" if problem else "")) from None
        except NoStreamResponseError:
            self._js = None  # if the stream is gone, the next call makes it again
            raise BusUnavailable(self._say(
                f"no stream {self.address.stream} answered (deleted, or its nodes are "
                "choosing a leader)")) from None
        except (NatsError, OSError) as exc:
            raise BusUnavailable(self._say(f"NATS refused the events: {_words(exc)}")) from None
        finally:
            for future in futures:
                future.cancel()  # those not done: the relay sends them again
        return [ack.seq for ack in acks]

    async def read(self, after: int, limit: int, wait: float = 0.0,
                   types: frozenset[str] | None = None) -> Page:
        """Every event, whatever `types` says (the interface allows it: the reader skips
        what is not its own). Not yet filtered on the server (filter_subjects): an ordered
        consumer's positions would then skip the other types' sequences, which its gap
        check (`reader.head > after` with nothing sent) takes for lost events."""
        if self._lost:
            raise BusUnavailable(self._say("bus is down: lost the connection to NATS"))
        async with self._reading:
            reader = self._reader
            if reader is None or reader.next != after + 1 or reader.broken:
                if reader is not None:
                    await reader.stop()
                self._reader = None
                info = await self._stream_info()
                reader = _Reader(after + 1, info.state.last_seq, _log_id(info), self.address,
                                 self.name)
                await reader.subscribe(await self._jetstream())
                self._reader = reader
            return await self._take(reader, after, limit, wait)

    async def head(self) -> int:
        return int((await self._stream_info()).state.last_seq)

    # --- reading ----------------------------------------------------------------------------

    async def _take(self, reader: _Reader, after: int, limit: int, wait: float) -> Page:
        if not reader.buffer:
            # events the stream holds are on their way: wait for them even if not asked to
            patience = max(wait, DELIVERY_GRACE) if reader.head > after else wait
            if patience > 0:
                reader.arrived.clear()
                try:
                    async with asyncio.timeout(patience):
                        await reader.arrived.wait()
                except TimeoutError:
                    pass
            if not reader.buffer:
                if reader.broken:  # disconnected, or a gap: the next read starts anew
                    raise BusUnavailable(self._say("the NATS consumer was interrupted"))
                if reader.head > after:
                    reader.broken = True
                    raise BusUnavailable(self._say(
                        f"NATS holds events after position {after:,} but sent none in "
                        f"{patience:g} s"))
                if wait > 0:  # an idle long-poll: check the stream is still the one we read
                    info = await self._stream_info()
                    if _log_id(info) != reader.log or info.state.last_seq > after:
                        reader.broken = True  # replaced, or events we were not sent
                        return Page(int(info.state.last_seq), [], _log_id(info))
                return Page(max(reader.head, after), [], reader.log)
        taken = [reader.buffer.popleft() for _ in range(min(limit, len(reader.buffer)))]
        reader.next = taken[-1].position + 1
        if len(reader.buffer) < HIGH_WATER // 2:
            reader.room.set()
        return Page(max(reader.head, taken[-1].position), taken, reader.log)

    # --- the connection ---------------------------------------------------------------------

    async def _jetstream(self) -> JetStreamContext:
        if self._js is not None and self._nc is not None and not self._nc.is_closed:
            return self._js
        async with self._connecting:
            if self._js is not None and self._nc is not None and not self._nc.is_closed:
                return self._js
            import_nats()
            import nats

            async def error(exc: Exception) -> None:
                if self._problem is None or not isinstance(exc, OSError):  # the server's
                    self._problem = _words(exc)  # words over what the socket saw after
                log.debug("nats: %s", self._problem)

            async def disconnected() -> None:
                if self._closing:
                    return  # closed on purpose (a dashboard's last tab gone): nothing lost
                self._lost = True
                reader = self._reader
                if reader is not None:  # its server-side consumer may be gone: start anew
                    reader.broken = True
                    reader.arrived.set()
                log.info("nats: disconnected; reconnecting")

            async def reconnected() -> None:
                self._lost = False
                log.info("nats: reconnected")

            async def closed() -> None:
                self._lost = False  # the next call connects anew

            try:
                nc = await nats.connect(
                    list(self.address.servers), name=self.name,
                    user=self.address.user or None, password=self.address.password or None,
                    inbox_prefix=self.address.inbox.encode(),
                    connect_timeout=max(1, round(self.address.timeout)),
                    allow_reconnect=True, max_reconnect_attempts=RECONNECT_ATTEMPTS,
                    reconnect_time_wait=RECONNECT_WAIT,
                    error_cb=error, disconnected_cb=disconnected,
                    reconnected_cb=reconnected, closed_cb=closed,
                )
            except Exception as exc:  # nats raises several kinds, and OSError
                problem, self._problem = self._problem, None
                raise BusUnavailable(
                    f"bus is down: cannot reach NATS at {', '.join(self.address.servers)}: "
                    + (_quiet(problem) if problem else _words(exc))) from None
            self._nc, self._js = nc, nc.jetstream(timeout=self.address.timeout)
            try:
                await self._ensure_stream(self._js)
            except BusUnavailable:
                await nc.close()
                self._nc = self._js = None
                raise
            return self._js

    async def claim(self) -> None:
        """Make the sandbox's stream, or check the one there is this sandbox's and fit to
        use (`msshop up` asks before anything starts). Raises StreamRefused for a stream
        it must not use, BusUnavailable if NATS cannot say."""
        await self._jetstream()

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        address = self.address
        try:
            info = await js.stream_info(address.stream)
        except NotFoundError:
            info = None
        except Exception as exc:
            raise BusUnavailable(self._say(f"NATS did not describe stream {address.stream}: "
                                           f"{_words(exc)}")) from None
        if info is not None:
            if (problem := stream_problem(info.config, address)) is not None:
                raise StreamRefused(problem)
            return
        config = StreamConfig(
            name=address.stream, subjects=[streams.all_subjects(address.sandbox)],
            description=f"msshop: the events of sandbox {address.sandbox}",
            metadata={streams.OWNER_KEY: address.sandbox},
            num_replicas=address.replicas, duplicate_window=address.dedup_window,
            allow_direct=True)
        try:
            await js.add_stream(config)
            log.info("nats: made stream %s (%d replica(s), de-duplication window %g s)",
                     address.stream, address.replicas, address.dedup_window)
        except Exception as exc:
            raise BusUnavailable(self._say(f"NATS did not make stream {address.stream}: "
                                           f"{_words(exc)}")) from None

    async def _stream_info(self) -> Any:
        from nats.js.errors import NotFoundError

        js = await self._jetstream()
        try:
            return await js.stream_info(self.address.stream)
        except NotFoundError:
            self._js = None  # made again at the next use
            raise BusUnavailable(f"NATS has no stream {self.address.stream} (it was "
                                 "deleted)") from None
        except Exception as exc:
            raise BusUnavailable(self._say(f"NATS did not answer: {_words(exc)}")) from None

    def _say(self, message: str) -> str:
        problem, self._problem = self._problem, None
        return f"{message} ({problem})" if problem else message


class _Reader:
    """One ordered consumer and the events it delivered that no read has taken yet."""

    def __init__(self, start: int, head: int, log_id: str, address: NatsAddress,
                 reader: str) -> None:
        self.address = address
        self.reader = reader  # who reads: the consumer's description on the server
        self.sender_at = streams.sender_at(address.sandbox)  # in this sandbox's subjects
        self.next = start  # the position the next read must ask after (minus one)
        self.expected = start  # the next position the server should deliver
        self.head = head
        self.log = log_id
        self.buffer: deque[Delivered] = deque()
        self.arrived = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.broken = False
        self._sub: Subscription | None = None

    async def subscribe(self, js: JetStreamContext) -> None:
        from nats.js.api import ConsumerConfig, DeliverPolicy

        try:
            self._sub = await js.subscribe(
                streams.all_subjects(self.address.sandbox), stream=self.address.stream,
                ordered_consumer=True, cb=self._delivered,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                config=ConsumerConfig(  # its name is the server's; it says whose it is
                    opt_start_seq=self.expected,
                    description=f"msshop sandbox {self.address.sandbox}: {self.reader}"),
                pending_msgs_limit=HIGH_WATER, pending_bytes_limit=256 * 1024 * 1024)
        except Exception as exc:
            raise BusUnavailable(f"NATS did not start a consumer at position "
                                 f"{self.expected:,}: {_words(exc)}") from None

    async def _delivered(self, msg: Msg) -> None:
        position, pending = _sequence(msg.reply)
        if position < self.expected:
            return  # delivered again after the consumer was made anew
        if position > self.expected:
            self.broken = True  # a gap: read again from the last position taken
            return
        self.expected = position + 1
        if position + pending > self.head:
            self.head = position + pending
        sender = msg.subject[self.sender_at:].partition(".")[0]
        self.buffer.append(Delivered(position, msgspec.Raw(msg.data), sender))
        if not self.arrived.is_set():
            self.arrived.set()
        if len(self.buffer) >= HIGH_WATER:
            self.room.clear()
            await self.room.wait()  # the server waits too (flow control)

    async def stop(self) -> None:
        self.room.set()
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception as exc:  # gone with its connection: nothing to undo
                log.debug("nats: unsubscribe: %s", _words(exc))


def stream_problem(config: Any, address: NatsAddress) -> str | None:
    """Why a stream found on the server is not this sandbox's to use (None: it is): made
    for another sandbox (its metadata says whose), or of a shape that would mix in others'
    events or lose events (other subjects, retention that removes what was read, limits
    that drop old events, memory only)."""
    name, servers = config.name, ", ".join(address.servers)
    own = streams.default_stream(address.sandbox)
    fix = (f"leave bus.stream unset to use this sandbox's own ({own})" if name != own else
           "name another one with bus.stream (MSSHOP_BUS_STREAM), or delete that one if it "
           "is yours to lose")
    owner = (config.metadata or {}).get(streams.OWNER_KEY)
    if owner and owner != address.sandbox:
        return (f"stream {name} on {servers} belongs to another sandbox ({owner}), not this "
                f"one ({address.sandbox}); {fix}")
    wrong = []
    wanted = streams.all_subjects(address.sandbox)
    if list(config.subjects or []) != [wanted]:
        wrong.append(f"subjects {', '.join(config.subjects or []) or 'none'} "
                     f"(this sandbox's: {wanted})")
    retention = getattr(config.retention, "value", config.retention)
    if retention not in (None, "limits"):
        wrong.append(f"{retention} retention (events would go once read; limits needed)")
    for limit in ("max_msgs", "max_bytes", "max_age"):
        value = getattr(config, limit, None)
        if value and value > 0:
            wrong.append(f"{limit} {value:g} (older events would be dropped)")
    if getattr(config.storage, "value", config.storage) == "memory":
        wrong.append("memory storage (events would be lost with the server)")
    if wrong:
        return (f"stream {name} on {servers} has the wrong shape for msshop: "
                f"{'; '.join(wrong)}; {fix}")
    return None


def _sequence(reply: str) -> tuple[int, int]:
    """(stream sequence, messages pending after it) from a delivered message's reply subject:
    $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>, or
    with <domain>.<account hash> after ACK. Read here rather than through Msg.metadata,
    which also builds a datetime per message (a tenth of a rebuild's time)."""
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[8])
    return int(tokens[7]), int(tokens[10])


def _log_id(info: Any) -> str:
    created = info.created.isoformat() if info.created else ""
    return hashlib.sha256(f"{info.config.name}@{created}".encode()).hexdigest()[:16]


def _quiet(problem: str) -> str:
    """An OS error as words: "[Errno 111] Connection refused" -> "connection refused"."""
    if problem.startswith("[Errno "):
        return problem.partition("] ")[2].lower()
    return problem.strip("'").lower()  # the server's: 'Authorization Violation'


def _words(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.removeprefix("nats: ")
