"""Reading the sandbox's log files: tails for `msshop logs`, followers for live views."""

from __future__ import annotations

from collections import deque
from pathlib import Path


class LogFollower:
    """Yields the complete lines appended to a file since the last call."""

    def __init__(self, path: Path, from_start: bool = False, offset: int | None = None
                 ) -> None:
        """From the end of the file, its start, or `offset` (where a reading stopped)."""
        self.path = path
        if offset is None:
            offset = 0 if from_start or not path.exists() else path.stat().st_size
        self.offset = offset
        self.partial = b""

    def new_lines(self) -> list[str]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # truncated or replaced: start over
            self.offset, self.partial = 0, b""
        if size == self.offset:
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in lines]


def tail(path: Path, count: int) -> list[str]:
    """The last `count` lines of a file (all of them for count <= 0)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            if count <= 0:
                return f.read().splitlines()
            return list(deque(f, maxlen=count))
    except FileNotFoundError:
        return []


def complete_lines(path: Path) -> tuple[list[str], int]:
    """Every complete line of a file, and the byte offset just after the last of them: a
    line still being written is left for a LogFollower started there."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    # split at newlines only: a line may hold other separators a user typed (U+2028 …)
    return data[:end].decode(errors="replace").split("\n")[:-1], end


def last_error_line(path: Path) -> str | None:
    """The last line that looks like an error, to quote when a service fails to start."""
    lines = [line.rstrip("\n") for line in tail(path, 50)]
    for line in reversed(lines):  # a service that could not start says why in one line
        if " could not start: " in line:
            return line
    for line in reversed(lines):
        if " ERROR " in line or " CRITICAL " in line or "Error" in line:
            return line
    return lines[-1] if lines else None
