"""What a trial is given (the running sandbox, its clients, how long it may take) and what
it gives back (findings, why it could not tell, the figures it measured)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from msshop.contracts.config import Settings
from msshop.contracts.spans import Span
from msshop.instruments.asking import Questioner
from msshop.instruments.challenges.findings import Finding, Verdict
from msshop.instruments.challenges.sandbox import Cast
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator.state import State

Say = Callable[[str], None]
GIVE_UP_AFTER = 2  # unanswered questions, after which a trial asks no more


@dataclass
class Arena:
    """A challenge's own sandbox, started and seeded, with the learner's service in it."""

    settings: Settings  # the sandbox's: start another like it with settings.commands changed
    state: State
    questioner: Questioner
    cast: Cast  # the users and products seeded for it
    seconds: float  # how long a timed part of the trial may run (squeezed in tests)
    say: Say

    @property
    def client(self) -> ShopClient:
        return self.questioner.client


@dataclass
class Judged:
    """A trial's outcome. No findings and nothing unknown: passed."""

    findings: list[Finding] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # why it could not tell, one line each
    figures: dict[str, Any] = field(default_factory=dict)  # what it measured, by name
    checked: list[str] = field(default_factory=list)  # what it checked, one line each
    traces: dict[str, list[Span]] = field(default_factory=dict)  # the findings', by id

    def found(self, findings: list[Finding], spans: list[Span]) -> None:
        """Findings about one answer, kept with the spans of its trace."""
        self.findings += findings
        for finding in findings:
            if finding.trace_id is not None:
                self.traces[finding.trace_id] = spans

    def given_up(self) -> bool:
        """Whether enough questions went unanswered that asking the rest would only make
        the learner wait (each waits for its timeout): the findings say enough."""
        if sum(f.unanswered for f in self.findings) < GIVE_UP_AFTER:
            return False
        self.checked.append(f"stopped asking after {GIVE_UP_AFTER} questions went "
                            "unanswered")
        return True

    @property
    def verdict(self) -> Verdict:
        if self.findings:
            return "failed"  # a wrong answer is wrong whatever else could not be told
        return "unknown" if self.unknown else "passed"


Trial = Callable[[Arena], Judged]
