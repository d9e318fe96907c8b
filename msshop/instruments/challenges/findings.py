"""What a failed check says: a typed finding, rendered as one line a learner can act on
(the subject, what was expected, what came back, the likely cause) and, optionally, one
line of evidence. Never a stack trace, never a wall of JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypedDict

Verdict = Literal["passed", "failed", "unknown"]
#: as the experiments' (valid, invalid, unknown)
EXIT_CODES: dict[Verdict, int] = {"passed": 0, "failed": 1, "unknown": 2}
SHOWN = 3  # findings named one by one; the rest are counted
TRACED = re.compile(r" \(trace ([0-9a-f]{32})\)$")


class FindingRecord(TypedDict):
    """A finding as --json and report.json carry it."""

    check: str
    subject: str
    expected: str
    actual: str
    cause: str | None
    evidence: str | None
    trace_id: str | None
    line: str


@dataclass(frozen=True)
class Finding:
    check: str  # which check found it, e.g. "equal to the monolith"
    subject: str  # whose answer, e.g. "user 12"
    expected: str
    actual: str
    cause: str | None = None  # the likely cause, as a question the learner can follow
    evidence: str | None = None  # what it rests on, e.g. the requests counted in the trace
    trace_id: str | None = None  # the failing request's trace (in --json and the report)
    unanswered: bool = False  # the question got no answer at all (an error, or none)

    def line(self) -> str:
        """One line: subject, what came back, what was expected, the likely cause."""
        said = f"{self.subject}: {self.actual}, expected {self.expected}"
        return f"{said} — {self.cause}" if self.cause else said

    def record(self) -> FindingRecord:
        return {"check": self.check, "subject": self.subject, "expected": self.expected,
                "actual": self.actual, "cause": self.cause, "evidence": self.evidence,
                "trace_id": self.trace_id, "line": self.line()}


def first_few(findings: list[Finding]) -> tuple[list[Finding], int]:
    """The findings shown one by one, and how many more there were."""
    return findings[:SHOWN], max(0, len(findings) - SHOWN)


def refusal(message: str) -> tuple[str, str | None]:
    """What an error answer said, short (its first clause: the advice after it is for
    whoever runs the sandbox, which the learner's is not), and its trace id if named."""
    found = TRACED.search(message)
    said = TRACED.sub("", message).split("; ", 1)[0]
    return said, found.group(1) if found else None
