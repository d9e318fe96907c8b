"""Serve one service in the current (freshly forked) process: uvicorn + uvloop + httptools.

The service's stdout/stderr already point at its log file; its socket is bound; the read
end of the supervisor's lifeline pipe is open. Everything here runs in the child only.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
import uvloop

from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.db import install_isolation_guard

log = logging.getLogger("msshop.runner")


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
    install_isolation_guard(context.name, context.db_path)
    app = load_entry(entry)(context)
    config = uvicorn.Config(
        app, loop="none", http="httptools", ws="none", lifespan="on",
        access_log=False, log_config=None, log_level=log_level,
        timeout_graceful_shutdown=1, timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)

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
                server.should_exit = True

        loop.add_reader(lifeline_fd, lifeline_event)
        log.info("%s serving on %s:%s (pid %d, db %s)", context.name,
                 *sock.getsockname()[:2], os.getpid(), context.db_path)
        await server.serve(sockets=[sock])

    uvloop.run(main())
