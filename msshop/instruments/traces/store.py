"""The traces of recent questions, kept in the sandbox (traces/<id>.json, the last 200) so
`msshop trace` can show or export one again, and `msshop traces` list them."""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from msshop.contracts.errors import SandboxError, UsageError
from msshop.contracts.outcomes import ListedTrace
from msshop.contracts.spans import Span
from msshop.instruments.traces.shape import summary
from msshop.runtime.platform import disk

KEEP_TRACES = 200


@dataclass(frozen=True)
class StoredTrace:
    trace_id: str
    question: str
    strategy: str
    user_id: int
    fanout: str | None
    spans: list[Span]
    kind: str = "question"  # question (a read) | write (a write followed to the read model)


def listed(trace: StoredTrace) -> ListedTrace:
    """One line of `msshop traces` (and one item of its --json)."""
    shape = summary(trace.spans)
    strategy = (f"{trace.question} (write)" if trace.kind == "write"
                else f"{trace.strategy} ({trace.fanout})" if trace.fanout else trace.strategy)
    return {"trace_id": trace.trace_id, "kind": trace.kind, "user_id": trace.user_id,
            "strategy": strategy,
            "started_at": min((float(s["start"]) for s in trace.spans), default=0.0),
            "duration_ms": shape["duration_ms"],
            "services": [s for s in shape["services"] if s != "cli"],
            "ok": all(s.get("status") != "error" for s in trace.spans),
            "spans": len(trace.spans)}


def matching(traces: list[StoredTrace], user: int | None = None,
             strategy: str | None = None, failed: bool = False, limit: int = 20
             ) -> list[ListedTrace]:
    """The newest `limit` traces that pass the filters."""
    lines = []
    for trace in traces:
        line = listed(trace)
        if user is not None and line["user_id"] != user:
            continue
        if strategy is not None and trace.strategy != strategy:
            continue
        if failed and line["ok"]:
            continue
        lines.append(line)
        if len(lines) == limit:
            break
    return lines


class TraceStore:
    """One JSON file per trace, and which was last."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def of(cls, sandbox: Path) -> TraceStore:
        """The store of the sandbox in that directory (running or not)."""
        return cls(sandbox / "traces")

    def save(self, trace: StoredTrace) -> str | None:
        """Keep the trace; None, or why it could not be kept (a full disk): a warning for
        the caller to show, never a failure of the question it traces."""
        written = self.folder / f"{trace.trace_id}.json"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            written.write_text(json.dumps(asdict(trace)))
            (self.folder / "last").write_text(trace.trace_id)
            stored = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
            for old in stored[:-KEEP_TRACES]:
                old.unlink(missing_ok=True)
        except OSError as exc:
            with suppress(OSError):  # a half-written trace is no trace
                written.unlink(missing_ok=True)
            why = (f"the disk is full ({self.folder})" if disk.is_full(exc)
                   else f"{exc.strerror or exc} ({self.folder})")
            return (f"trace {trace.trace_id} was not kept: {why}; `msshop trace` cannot "
                    "show it again")
        return None

    def _whole(self, prefix: str) -> str:
        found = [p.stem for p in self.folder.glob(f"{prefix}*.json")] \
            if self.folder.is_dir() else []
        if len(found) > 1:
            raise UsageError(f"{len(found)} stored traces begin with {prefix}; give more of "
                             "the id")
        if not found:
            raise SandboxError(f"no stored trace begins with {prefix} in {self.folder}; "
                               "see: msshop traces")
        return found[0]

    def recent(self) -> list[StoredTrace]:
        """Every stored trace, newest first (one that cannot be read is passed over)."""
        found = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime,
                       reverse=True) if self.folder.is_dir() else []
        traces = []
        for path in found:
            try:
                traces.append(StoredTrace(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # being replaced, or not one of ours
        return traces

    def load(self, trace_id: str) -> StoredTrace:
        """A stored trace by id, or the last one for 'last'."""
        if trace_id == "last":
            try:
                trace_id = (self.folder / "last").read_text().strip()
            except (FileNotFoundError, NotADirectoryError):
                raise SandboxError("no trace yet; ask a question first, e.g.: "
                                   "msshop query --user 1") from None
        if not all(c in "0123456789abcdef" for c in trace_id) or not 6 <= len(trace_id) <= 32:
            raise UsageError(f"'{trace_id}' is not a trace id (32 hex digits, or the first 6 "
                             "or more as `msshop traces` shows them) or 'last'")
        if len(trace_id) < 32:
            trace_id = self._whole(trace_id)
        try:
            data = json.loads((self.folder / f"{trace_id}.json").read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise SandboxError(f"no stored trace {trace_id} in {self.folder}; the last "
                               f"{KEEP_TRACES} are kept") from None
        return StoredTrace(**data)
