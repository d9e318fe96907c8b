"""What `msshop wait` (and `up --detach --wait`) reports: the condition waited for, whether
it was reached, how long it took, each service's part and what was still missing.
`wait --json` prints it; render words it; the outcome gives the exit code."""

# No `from __future__ import annotations`, as in status.py: these TypedDicts compile
# their annotations once, when defined.
from typing import Literal, NotRequired, TypedDict

Condition = Literal["healthy", "caught-up", "down"]
CONDITIONS: tuple[Condition, ...] = ("healthy", "caught-up", "down")

# reached: the condition holds; timed-out: not within the time given; service-down: a
# service it needs crashed (or failed to start), so waiting longer cannot help;
# no-sandbox: nothing runs (for healthy and caught-up), or it stopped meanwhile.
Outcome = Literal["reached", "timed-out", "service-down", "no-sandbox"]
EXIT_CODES: dict[Outcome, int] = {"reached": 0, "no-sandbox": 1, "service-down": 1,
                                  "timed-out": 3}


class ServiceWait(TypedDict):
    """One service, as last looked at."""

    name: str
    status: str  # as the supervisor reports it: running, stopped, crashed … ("-": no sandbox)
    health: str  # ok | not ready | not answering (running, no answer) | - (not asked)
    ready: bool  # the condition holds for it
    why: str | None  # what it still lacks, e.g. "1,200 events behind"
    exit: NotRequired[str | None]  # how it last ended, e.g. "killed by SIGKILL"
    pending: NotRequired[int]  # caught-up, a writing service: events not on the bus yet
    # caught-up, query: the bus position its read model applied; a writing service that
    # takes part in the saga (issue 26): the position its saga steps applied
    position: NotRequired[int]
    behind: NotRequired[int]  # caught-up: the bus's head minus that position


class WaitReport(TypedDict):
    condition: str  # healthy | caught-up | down
    reached: bool
    outcome: Outcome
    waited_ms: float
    timeout_s: float
    sandbox: str
    services: list[ServiceWait]
    missing: list[str]  # what did not hold, one phrase each: "query: 1,200 events behind"
    bus_head: NotRequired[int | None]  # caught-up: the bus's last position (None: no answer)
