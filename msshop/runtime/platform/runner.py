"""Serve one service in the current (freshly forked) process: uvicorn + uvloop + httptools.

The service's stdout/stderr already point at its log file; its socket is bound; the read
end of the supervisor's lifeline pipe is open. Everything here runs in the child only.

Stopping (SIGTERM from the supervisor, or the lifeline's EOF) takes milliseconds: see
PromptServer.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import math
import os
import socket
import sys
from collections.abc import Callable
from contextlib import suppress
from types import FrameType
from typing import Any

import uvicorn
import uvloop

from msshop.runtime.fd_limit import connection_cap, raise_fd_limit
from msshop.runtime.platform.app import release_held
from msshop.runtime.platform.connections import SWEEP, ConnectionGuard, guarded
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.isolation import confine, install_isolation_guard
from msshop.runtime.platform.landlock import LandlockError

log = logging.getLogger("msshop.runner")
uvicorn_log = logging.getLogger("uvicorn.error")

TICK = 0.1  # uvicorn's: its chores (the Date header) run every tenth tick
SWEEP_TICKS = round(SWEEP / TICK)  # the connections' deadlines are kept every this many
DRAIN_POLL = 0.001  # seconds between looks at the connections still open while stopping


def configure_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s.%(msecs)03d {service} %(levelname)s %(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own loggers propagate to ours; its per-request access log stays off (cost).
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def load_entry(entry: str) -> Callable[[ServiceContext], Any]:
    module_name, _, function = entry.partition(":")
    factory: Callable[[ServiceContext], Any] = getattr(importlib.import_module(module_name),
                                                       function)
    return factory


def serve(entry: str, context: ServiceContext, sock: socket.socket, lifeline_fd: int,
          log_level: str) -> None:
    configure_logging(context.name, log_level)
    own = context.db_path.parent  # its own directory (data/<service>/)
    try:
        own.mkdir(mode=0o700, parents=True, exist_ok=True)  # there before its rule names it
    except OSError as exc:
        log.error("%s could not start: cannot make its directory %s: %s", context.name, own,
                  exc.strerror)
        sys.exit(1)
    try:
        confine(context.confinement)  # the log is open already: it needs no rule
    except LandlockError as exc:
        log.error("%s could not start: its isolation rule cannot be applied (%s); fix that, "
                  "or run without the kernel's rule: [isolation] kernel = false or "
                  "MSSHOP_KERNEL_ISOLATION=0", context.name, exc.strerror)
        sys.exit(1)
    install_isolation_guard(context.name, context.db_path,
                            closed=context.db_path.parent.parent)  # data/: the others' too
    app = load_entry(entry)(context)
    limits = context.connection_limits
    fd_limit, _ = raise_fd_limit()  # the supervisor has; a service started alone may not
    guard = ConnectionGuard(context.name, limits, connection_cap(limits, fd_limit))
    config = uvicorn.Config(
        app, loop="none", http=guarded(guard), ws="none", lifespan="on",
        access_log=False, log_config=None, log_level=log_level,
        timeout_graceful_shutdown=1, timeout_keep_alive=limits.keep_alive,
    )
    server = PromptServer(config, release=lambda: release_held(app), guard=guard)

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def lifeline_event() -> None:
            try:
                data = os.read(lifeline_fd, 64)
            except OSError:
                data = b""
            if not data:  # EOF: the supervisor is gone
                loop.remove_reader(lifeline_fd)
                log.warning("supervisor is gone; %s shuts down", context.name)
                server.exit_now()

        loop.add_reader(lifeline_fd, lifeline_event)
        log.info("%s serving on %s:%s (pid %d, db %s, at most %d connections)",
                 context.name, *sock.getsockname()[:2], os.getpid(), context.db_path,
                 guard.cap)
        bound = doors(context, sock)
        if context.nats_doors:  # the service serves them itself (services/bus_door)
            context.door_sockets.extend(bound)
            bound = []
        await server.serve(sockets=[sock, *bound])

    # What the process holds once it is set up (the supervisor's heap, frozen before the
    # fork: ServiceProcess.start; then the app) lives as long as it does. Frozen out of the
    # collector's reach, a full collection while serving looks only at what serving made,
    # instead of pausing the service for milliseconds now and then (lag p99).
    gc.collect()
    gc.freeze()
    uvloop.run(main())


def doors(context: ServiceContext, sock: socket.socket) -> list[socket.socket]:
    """A listening socket for each program of your own that calls this service (its door,
    links.py's Doors): the supervisor held each port until this start, as a nats-server's
    own; one that cannot be bound now (taken meanwhile) fails the start, named."""
    host = sock.getsockname()[0]
    bound = []
    for caller, port in context.doors.ports.items():
        door = socket.socket(sock.family, socket.SOCK_STREAM)
        door.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            door.bind((host, port))
        except OSError as exc:
            door.close()
            log.error("%s could not start: cannot listen on its door for %s's calls, port "
                      "%d: %s; free it, then: msshop start %s", context.name, caller, port,
                      exc.strerror, context.name)
            raise SystemExit(1) from None
        bound.append(door)
    return bound


class PromptServer(uvicorn.Server):
    """uvicorn's server, stopping in milliseconds rather than 0.2 to 1.2 s.

    uvicorn notices a stop on its next 0.1 s tick, then sleeps 0.1 s for connections to
    close, looks again every 0.1 s, and holds a request still open (the bus's long-poll)
    up to timeout_graceful_shutdown before cancelling it with an ERROR line. Here a stop
    wakes the loop at once; requests held open are released (they answer with what they
    have: app.release_held); connections are looked at every millisecond. A request
    still running after timeout_graceful_shutdown is cancelled, as uvicorn does.

    Its ticks also keep the connections' deadlines (connections.ConnectionGuard.sweep):
    no timer or task per connection or per request.
    """

    def __init__(self, config: uvicorn.Config, release: Callable[[], None],
                 guard: ConnectionGuard | None = None) -> None:
        super().__init__(config)
        self.release = release
        self.guard = guard
        self.stop_requested = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None  # set once serving

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT (uvicorn's handler, which notes the signal to die of it once
        stopped), and the loop woken at once. A signal handler may run between any two
        bytecodes, so the event is set from the loop, not here."""
        super().handle_exit(sig, frame)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.stop_requested.set)

    def exit_now(self) -> None:
        """Stop, asked from inside the loop (the supervisor is gone)."""
        self.should_exit = True
        self.stop_requested.set()

    async def main_loop(self) -> None:
        """uvicorn's loop of ticks, each also ended by a stop request."""
        self.loop = asyncio.get_running_loop()
        if self.guard is not None:
            self.guard.bind(self.server_state.connections, self.loop.time)
        ticks = 0
        while not await self.on_tick(ticks):
            ticks = (ticks + 1) % 864_000
            if self.guard is not None and ticks % SWEEP_TICKS == 0:
                self.guard.sweep()
            with suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    await self.stop_requested.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown (no new connections, idle ones closed, open requests finished,
        then the app's shutdown), with held requests released first and no fixed pauses."""
        uvicorn_log.info("Shutting down")
        if self.guard is not None:
            self.guard.end_burst()  # what a burst of connections still going did
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        self.release()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # an idle one closes now; a busy one after its answer
        if not await self.drained(self.config.timeout_graceful_shutdown):
            tasks = self.server_state.tasks
            log.warning("%d request(s) still running %g s after the stop began; cancelled",
                        len(tasks), self.config.timeout_graceful_shutdown)
            for task in list(tasks):
                task.cancel()
        else:
            for server in self.servers:
                await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def drained(self, timeout: float | None) -> bool:
        """Wait until every connection has closed and every request has finished (or a
        second Ctrl-C forces the exit); False if some have not within `timeout` seconds
        (None: no limit)."""
        state = self.server_state
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (math.inf if timeout is None else timeout)
        while (state.connections or state.tasks) and not self.force_exit:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(DRAIN_POLL)
        return True
