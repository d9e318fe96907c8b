"""How far the learner has climbed, for the directory they work in: one small JSON file
there (PROGRESS_FILE), which they may delete to start again. Written whole or not at all;
a damaged one is said in one line, never a crash."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from msshop.contracts.errors import UsageError
from msshop.instruments.challenges.findings import Verdict

PROGRESS_FILE = ".msshop-challenges.json"
Status = Literal["not tried", "passed", "failed"]
STATUSES: tuple[Status, ...] = ("not tried", "passed", "failed")


@dataclass
class Progress:
    statuses: dict[str, Status] = field(default_factory=dict)
    problem: str | None = None  # why the file could not be read (it is then ignored)

    def of(self, name: str) -> Status:
        return self.statuses.get(name, "not tried")


def path_in(directory: Path | None = None) -> Path:
    return (directory or Path.cwd()) / PROGRESS_FILE


def read(directory: Path | None = None) -> Progress:
    path = path_in(directory)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Progress()
    except (OSError, UnicodeDecodeError) as exc:
        return Progress(problem=_damaged(path, getattr(exc, "strerror", None) or str(exc)))
    try:
        found = json.loads(raw)
        entries = found["challenges"]
        statuses = {str(name): entry["status"] for name, entry in entries.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return Progress(problem=_damaged(path, "not the JSON msshop writes"))
    if any(status not in STATUSES for status in statuses.values()):
        return Progress(problem=_damaged(path, "a status msshop does not write"))
    return Progress(statuses)


def record(name: str, verdict: Verdict, directory: Path | None = None) -> Progress:
    """`name`'s status after a run with `verdict` (unknown changes nothing), written
    atomically; a damaged file is replaced. A directory that cannot be written is one
    line."""
    progress = read(directory)
    if verdict == "unknown":
        return progress
    progress.statuses[name] = verdict
    body = {"version": 1, "challenges": {n: {"status": s}
                                         for n, s in progress.statuses.items()}}
    path = path_in(directory)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f"{PROGRESS_FILE}.", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(body, out, indent=2)
                out.write("\n")
            Path(temporary).replace(path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise
    except OSError as exc:
        raise UsageError(f"cannot keep your progress in {path}: {exc.strerror or exc}; "
                         "run from a directory you can write") from None
    return Progress(progress.statuses)


def _damaged(path: Path, why: str) -> str:
    return f"{path.name} is damaged ({why}); delete it to start the ladder afresh"
