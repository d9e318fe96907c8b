"""The read model's dead letters on the dashboard (issue 28, "Watch it"): the events the
query service could not apply (a poison event), how many and the newest few, with why.

The query service counts them in its /health (consumer.dead_letters), which the gatherer
asks at every look anyway; only when that count changes are the newest asked of its
GET /dead-letters, an owner's route (dead letters hold events' data), with the owner's
token the dashboard holds in its memory for its buttons (actions.py), as `msshop
deadletters` does; never in the page. Nobody watching: no look, nothing asked. A dashboard
without its owner's capability shows the count alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from msshop.contracts.credentials import bearer

SHOWN = 5  # the newest dead letters a Snapshot carries
QUERY = "query"

#: (path, headers) -> the JSON document the query service answered, or why there is none
Ask = Callable[[str, dict[str, str]], Awaitable[dict[str, Any] | str]]


class DeadLetterView(msgspec.Struct, frozen=True):
    """A dead letter as the page shows it."""

    position: int  # its position on the bus
    type: str | None  # its type (None: it was not even an event)
    reason: str  # why the read model could not apply it
    at: float  # unix seconds: when it was dead-lettered


class DeadLetters:
    def __init__(self, owner: str | None) -> None:
        self._headers = bearer(owner) if owner else {}
        self.count = 0  # as the query service's /health last counted them
        self.newest: list[DeadLetterView] = []
        self._asked_for: int | None = None  # the count the newest were asked at

    async def update(self, health: dict[str, Any] | None, ask: Ask) -> None:
        """From the query service's latest /health (None: it did not answer: the last
        known stay); the newest asked again only when its count has changed."""
        consumer = (health or {}).get("consumer")
        count = consumer.get("dead_letters") if isinstance(consumer, dict) else None
        if not isinstance(count, int):
            return
        self.count = count
        if count == self._asked_for:
            return
        if count == 0 or not self._headers:
            self.newest, self._asked_for = [], count
            return
        answer = await ask(f"/dead-letters?limit={SHOWN}", self._headers)
        if isinstance(answer, str):  # asked again at the next look
            return
        try:
            self.newest = [DeadLetterView(int(item["position"]), item.get("type"),
                                          str(item.get("reason", "")), float(item["dead_at"]))
                           for item in answer.get("dead_letters") or []]
        except (KeyError, TypeError, ValueError, AttributeError):
            return  # not the answer the route declares: the count alone is shown
        self._asked_for = count
