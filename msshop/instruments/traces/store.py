"""The traces of recent questions, kept in the sandbox (traces/<id>.json, the last 200) so
`msshop trace` can show or export one again."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from msshop.contracts.errors import SandboxError, UsageError
from msshop.contracts.spans import Span

KEEP_TRACES = 200


@dataclass(frozen=True)
class StoredTrace:
    trace_id: str
    question: str
    strategy: str
    user_id: int
    fanout: str | None
    spans: list[Span]


class TraceStore:
    """One JSON file per trace, and which was last."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def of(cls, sandbox: Path) -> TraceStore:
        """The store of the sandbox in that directory (running or not)."""
        return cls(sandbox / "traces")

    def save(self, trace: StoredTrace) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{trace.trace_id}.json").write_text(json.dumps(asdict(trace)))
        (self.folder / "last").write_text(trace.trace_id)
        stored = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in stored[:-KEEP_TRACES]:
            old.unlink(missing_ok=True)

    def load(self, trace_id: str) -> StoredTrace:
        """A stored trace by id, or the last one for 'last'."""
        if trace_id == "last":
            try:
                trace_id = (self.folder / "last").read_text().strip()
            except (FileNotFoundError, NotADirectoryError):
                raise SandboxError("no trace yet; ask a question first, e.g.: "
                                   "msshop query --user 1") from None
        if not all(c in "0123456789abcdef" for c in trace_id) or len(trace_id) != 32:
            raise UsageError(f"'{trace_id}' is not a trace id (32 hex digits) or 'last'")
        try:
            data = json.loads((self.folder / f"{trace_id}.json").read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise SandboxError(f"no stored trace {trace_id} in {self.folder}; the last "
                               f"{KEEP_TRACES} are kept") from None
        return StoredTrace(**data)
