"""The bus's door on NATS: where a program of your own reads the nats bus, so that the bus's
delivery faults reach it there as they reach it at the log bus. Owns no file.

    <door port, one per reader>   the NATS protocol, proxied to the nodes (proxy.py)
    POST /chaos {"caller": R, ...} the faults on reader R's link to the bus: latency, error
                                   rate (1: a partition), duplicate_rate, redeliver_rate,
                                   reorder_rate (the owner's token, as on every service)
    GET  /chaos/deliveries?reader=R  what the faults handed R out of the ordinary (journal.py)

The reader's service.json names its door as the bus's only server, always (so faults can
be set while it runs, as an HTTP door is always there). msshop's own query service reads
the nodes directly, with the faults applied in its own process (links.py's LinkedBus).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from msshop.runtime.platform.app import ServiceApp, service_app
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.db import StartupFailed
from msshop.runtime.platform.journal import DeliveryJournals, journal_endpoint
from msshop.runtime.platform.links import Doors
from msshop.runtime.platform.tasks import Tasks, Work
from msshop.runtime.services.bus_door.proxy import Nodes, ReaderDoor


class DoorListeners:
    """The reader doors as the app's resource: each served as a supervised task (shown in
    /health; failing while no node answers), its connections closed as the door stops."""

    def __init__(self, ctx: ServiceContext, readers: dict[str, ReaderDoor]) -> None:
        self.doors: Doors = ctx.doors  # POST /chaos {"caller"} sets them (app.doors_of)
        self.tasks: Tasks = ctx.tasks
        self.sockets = ctx.door_sockets
        self.readers = readers

    async def start(self) -> None:
        for sock in self.sockets:
            caller = self.doors.caller_at[sock.getsockname()[1]]
            door = self.readers[caller]
            door.task = self.tasks.run(f"door for {caller}", self._serving(door, sock))

    @staticmethod
    def _serving(door: ReaderDoor, sock: socket.socket) -> Work:
        async def serve() -> None:
            # a copy of the socket each time: a restart after a failure listens again
            server = await asyncio.start_server(door.serve, sock=sock.dup())
            async with server:
                await server.serve_forever()

        return serve

    async def close(self) -> None:
        for door in self.readers.values():
            for writer in list(door.connections):
                writer.close()
            if door.task is not None:
                await door.task.stop()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


def create_app(ctx: ServiceContext) -> ServiceApp:
    if ctx.bus_address is None:
        raise StartupFailed(f"{ctx.name} runs only in front of a NATS bus; this sandbox's "
                            "bus is the log, whose service keeps its own doors")
    nodes = Nodes(list(ctx.bus_address.servers))
    journals = DeliveryJournals()
    readers = {caller: ReaderDoor(caller, port, ctx.doors, nodes, journals)
               for caller, port in ctx.doors.ports.items()}

    def health() -> dict[str, Any]:
        # each reader: its door's port, its connections now, the node the last one reached
        return {"readers": {caller: door.health() for caller, door in readers.items()}}

    return service_app(
        ctx.name,
        [journal_endpoint(journals, ctx.doors.ports)],
        health,
        [DoorListeners(ctx, readers)],
        ctx.tracer,
        ctx.admin,
        __doc__ or "",
    )
