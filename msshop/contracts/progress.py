"""An experiment's progress as it runs (`msshop experiment --progress FILE`): one JSON
document a line, appended as the run goes, which the dashboard follows to draw the run's
charts as they fill in. Written by the instruments, read by the dashboard's process."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, NotRequired, TypedDict


class Tally(NamedTuple):
    """One strategy's requests sent in one second: answered (by the shop: a read's 200, a
    purchase confirmed, rejected or pending) and failed (an error, or no answer). In JSON,
    [answered, failed]."""

    answered: int
    failed: int

    def add(self, answered: bool) -> Tally:
        return Tally(self.answered + answered, self.failed + (not answered))


class ProgressLine(TypedDict):
    """One line of the file: something said (the run's own words, as the terminal shows
    them), or one second of the load (0 is its first) and its tallies by strategy."""

    said: NotRequired[str]
    second: NotRequired[int]
    strategies: NotRequired[dict[str, Tally]]


Progress = Callable[[ProgressLine], None]  # where a run's progress goes, as it runs
