"""The delivery journal: each event a reader was handed out of the ordinary on purpose (a
duplicate, a late redelivery, a reorder: links.py's Misdelivery), kept per reader for the
owner to read (GET /chaos/deliveries), as the evidence a checker names a wrong answer's
cause with. Kept where the faults are decided for a program of your own: the log bus
(services/bus.py) and, on NATS, the bus's door (services/bus_door)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Collection, Iterable
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from msshop.contracts.status import DeliveryJournal, Misdelivered
from msshop.runtime.platform.http import HttpError, json_response
from msshop.runtime.platform.links import envelope_of
from msshop.runtime.platform.openapi import Endpoint, Param

JOURNAL_SIZE = 10_000  # misdeliveries kept per reader: a bounded memory


class DeliveryJournals:
    """Each reader's journal, the last JOURNAL_SIZE entries (`dropped`: how many older
    ones were let go)."""

    def __init__(self) -> None:
        self.journals: dict[str, deque[Misdelivered]] = {}
        self.dropped: dict[str, int] = {}

    def note(self, reader: str, odd: Iterable[tuple[int, bytes, str]]) -> None:
        """(position, the event's bytes, fault) of each event handed out of the ordinary."""
        journal = self.journals.setdefault(reader, deque(maxlen=JOURNAL_SIZE))
        now = time.time()
        for position, body, fault in odd:
            try:
                event = envelope_of(body)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # not an event: nothing a checker could name
            if len(journal) == JOURNAL_SIZE:
                self.dropped[reader] = self.dropped.get(reader, 0) + 1
            journal.append({"reader": reader, "fault": fault, "position": position,
                            "type": event.type, "aggregate_type": event.aggregate_type,
                            "aggregate_id": event.aggregate_id,
                            "aggregate_version": event.aggregate_version, "at": now})

    def journal(self, reader: str, limit: int) -> DeliveryJournal:
        kept = list(self.journals.get(reader, ()))
        return {"reader": reader, "entries": kept[-limit:], "kept": len(kept),
                "dropped": self.dropped.get(reader, 0)}


def journal_endpoint(journals: DeliveryJournals, readers: Collection[str]) -> Endpoint:
    """GET /chaos/deliveries, declared once for every service that keeps a journal;
    `readers`: the programs of your own whose deliveries it decides."""

    async def get_deliveries(request: Request, reader: str, limit: int) -> Response:
        if reader not in readers:
            known = ", ".join(readers) or "none runs here"
            raise HttpError(422, f"reader {reader!r}: name a program of your own that reads "
                                 f"the bus ({known})")
        return json_response(journals.journal(reader, limit))

    return Endpoint(
        "GET", "/chaos/deliveries", get_deliveries,
        "What the delivery faults handed a reader out of the ordinary", {
            200: (DeliveryJournal, "The reader's misdeliveries, oldest first: duplicates, "
                                   "late redeliveries, reorders"),
            422: "Not a program of your own that reads the bus"},
        params=[Param("reader", Annotated[str, msgspec.Meta(min_length=1, max_length=64)],
                      "the reader, as its credential names it", required=True,
                      missing="name the reader: GET /chaos/deliveries?reader=query"),
                Param("limit", Annotated[int, msgspec.Meta(ge=1, le=JOURNAL_SIZE)],
                      "at most this many, the newest", default=JOURNAL_SIZE)],
        auth="owner", action="reading the delivery journal", chaos=False, traced=False)
