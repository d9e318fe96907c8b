"""What the supervisor tells a person. The live rich view is in render.py; this is the plain one.

A detached supervisor has no terminal: it writes its events, timestamped, to
logs/supervisor.log, which `msshop logs supervisor` shows.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Protocol

from msshop.runtime.orchestrator.state import State


class Printer(Protocol):
    #: seconds between refresh() calls; 0 = the printer shows no live view
    refresh_interval: float

    def event(self, message: str, level: str = "info") -> None:
        """Something happened to the sandbox: started, stopped, crashed, failed."""

    def log_lines(self, service: str, lines: list[str]) -> None:
        """New lines a service wrote to its log (only asked for when refresh_interval > 0)."""

    def refresh(self, state: State, health: dict[str, dict[str, Any] | None]) -> None:
        """Redraw the live view with the current state and each service's /health."""

    def close(self) -> None:
        """The supervisor is done."""


def stamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"


class FilePrinter:
    """Events, one line each, appended to a file."""

    refresh_interval = 0.0

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # the owner's alone
        self.out = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def event(self, message: str, level: str = "info") -> None:
        self.out.write(f"{stamp()} supervisor {level.upper()} {message}\n")

    def log_lines(self, service: str, lines: list[str]) -> None:
        pass

    def refresh(self, state: State, health: dict[str, dict[str, Any] | None]) -> None:
        pass

    def close(self) -> None:
        self.out.close()
