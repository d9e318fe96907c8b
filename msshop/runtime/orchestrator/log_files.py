"""Reading the sandbox's log files: tails for `msshop logs`, followers for live views."""

from __future__ import annotations

import io
from collections import deque
from pathlib import Path


class LogFollower:
    """Yields the complete lines appended to a file since the last call."""

    def __init__(self, path: Path, from_start: bool = False, offset: int | None = None,
                 most: int | None = None) -> None:
        """From the end of the file, its start, or `offset` (where a reading stopped).
        `most`: bytes read at most per call; beyond, the oldest are skipped (said in a
        line of their own), so a process flooding its log cannot flood its reader."""
        self.path = path
        self.most = most
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
        skipped = 0
        if self.most is not None and size - self.offset > self.most:
            skipped = size - self.most - self.offset
            self.offset, self.partial = size - self.most, b""
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        said = [line.decode(errors="replace") for line in lines]
        if skipped:  # the line cut in two by the skip is skipped too
            said[:1] = [f"[msshop: {skipped:,} bytes of this log skipped here, written "
                        "faster than they can be shown; the file has them all]"]
        return said


def tail(path: Path, count: int, most: int | None = None) -> list[str]:
    """The last `count` lines of a file (all of them for count <= 0), read from its last
    `most` bytes (None: the whole file)."""
    try:
        with path.open("rb") as f:
            if most is not None:
                end = f.seek(0, 2)
                f.seek(max(0, end - most))
                if end > most:
                    f.readline()  # the line the cut fell in
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = io.StringIO(text, newline=None).readlines()  # as a file opened "r" reads
    return lines if count <= 0 else list(deque(lines, maxlen=count))


def complete_lines(path: Path, last: int = 0) -> tuple[list[str], int]:
    """Every complete line of a file (or only its `last` ones: read from the end, so a log
    of gigabytes costs what its end does), and the byte offset just after the last of
    them: a line still being written is left for a LogFollower started there."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            start, chunk = size, 64 * 1024
            while True:  # from the end, each read twice the last, until enough lines
                start = max(0, size - chunk) if last > 0 else 0
                f.seek(start)
                data = f.read(size - start)
                if start == 0 or data.count(b"\n") > last:
                    break
                chunk *= 2
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    first = data.find(b"\n") + 1 if start > 0 else 0  # the line the cut fell in: not whole
    # split at newlines only: a line may hold other separators a user typed (U+2028 …)
    lines = data[first:end].decode(errors="replace").split("\n")[:-1]
    return (lines[-last:] if last > 0 else lines), start + end


def last_error_line(path: Path) -> str | None:
    """The last line that looks like an error, to quote when a service fails to start."""
    # the end of the file only: a process that flooded its log must not stall the report
    lines = [line.rstrip("\n") for line in tail(path, 50, most=256 * 1024)]
    for line in reversed(lines):  # a service that could not start says why in one line
        if " could not start: " in line:
            return line
    for line in reversed(lines):
        if " ERROR " in line or " CRITICAL " in line or "Error" in line:
            return line
    return lines[-1] if lines else None
