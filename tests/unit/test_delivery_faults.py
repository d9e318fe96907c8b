"""The bus's delivery faults, one idea each (issue 25): reorder hands a page's updates of one
aggregate newest first and nothing twice; late redelivery hands events again once, at the
start of a later page, in order; with each, a page's last event stays last. The same code
serves the log bus for a program of your own and LinkedBus for msshop's own consumer."""

from __future__ import annotations

import asyncio
import random

import msgspec

from msshop.contracts import events
from msshop.contracts.events import Delivered
from msshop.runtime.platform.links import (
    Doors,
    LinkedBus,
    Links,
    Misdelivery,
    delivered_aggregate,
    link_fault,
)
from msshop.runtime.services.bus import JOURNAL_SIZE, Deliveries
from tests.fakes import MemoryBus


def product(version: int, product_id: int = 1) -> bytes:
    kind = events.PRODUCT_CREATED if version == 1 else events.PRODUCT_UPDATED
    return events.encode(events.make(kind, "products", product_id, version, {
        "id": product_id, "sku": None, "title": f"v{version}", "price": 1.0}, None))


def user(user_id: int) -> bytes:
    return events.encode(events.make(events.USER_SIGNED_UP, "users", user_id, 1, {
        "id": user_id, "email": f"u{user_id}@example.com", "name": "U"}, None))


def delivered(bodies: list[bytes], first: int = 1) -> list[Delivered]:
    return [Delivered(first + n, msgspec.Raw(body)) for n, body in enumerate(bodies)]


def versions(page: list[Delivered]) -> list[tuple[str, int]]:
    envelopes = [msgspec.json.decode(item.event) for item in page]
    return [(e["type"], e["aggregate_version"]) for e in envelopes]


def test_reorder_hands_one_aggregates_updates_newest_first_and_nothing_twice() -> None:
    page = delivered([product(1), product(2), user(1), product(3), product(4), user(2)])
    handed, odd = Misdelivery(delivered_aggregate, random.Random(1)).handed(
        page, link_fault(reorder_rate=1.0))
    assert [v for t, v in versions(handed) if t != events.USER_SIGNED_UP] == [4, 3, 2, 1]
    assert sorted(item.position for item in handed) == [1, 2, 3, 4, 5, 6], "nothing twice"
    assert handed[2] == page[2] and handed[-1] == page[-1], "other slots keep their event"
    assert sorted(item.position for item, fault in odd if fault == "reordered") == [1, 2, 4, 5]


def test_reorder_keeps_the_pages_last_event_last() -> None:
    page = delivered([product(1), product(2), product(3)])
    handed, odd = Misdelivery(delivered_aggregate).handed(page, link_fault(reorder_rate=1.0))
    assert handed[-1] == page[-1] and [v for _, v in versions(handed)] == [2, 1, 3]
    assert len(odd) == 2
    assert Misdelivery(delivered_aggregate).handed(
        page, link_fault(reorder_rate=0.0))[0] == page, "rate 0: as the bus says"


def test_late_redelivery_hands_events_again_once_at_the_start_of_a_later_page() -> None:
    misdelivery = Misdelivery(delivered_aggregate, random.Random(3))
    fault = link_fault(redeliver_rate=1.0)
    first, second, third = (delivered([user(n)], n) for n in (1, 2, 3))
    assert misdelivery.handed(first, fault) == (first, [])
    handed, odd = misdelivery.handed(second, fault)
    assert handed == [*first, *second] and odd == [(first[0], "redelivered")]
    handed, odd = misdelivery.handed(third, fault)
    assert handed == [*second, *third], "each event handed again once"
    assert misdelivery.handed([], fault) == ([], []), "nothing to put them before"


def test_our_own_consumer_gets_them_through_its_linked_bus() -> None:
    bus = MemoryBus()
    asyncio.run(bus.append([product(1), product(2), product(3), user(1)]))
    links = Links("query")
    links.set("bus", link_fault(reorder_rate=1.0, redeliver_rate=1.0))
    linked = LinkedBus(bus, links, random.Random(5))
    page = asyncio.run(linked.read(0, 100))
    assert [v for _, v in versions(list(page.events))][:3] == [3, 2, 1]
    assert page.events[-1].position == 4
    assert asyncio.run(linked.read(4, 100)).events == [], "nothing new: nothing again"
    asyncio.run(bus.append([user(2)]))
    again = asyncio.run(linked.read(4, 100))
    assert [item.position for item in again.events] == [1, 2, 3, 4, 5], \
        "late, in the order of the log: handed again before the next page's events"
    links.set("bus", None)
    assert [item.position for item in asyncio.run(linked.read(0, 100)).events] == [
        1, 2, 3, 4, 5], "cleared: as the bus says"


def test_with_a_reorder_rate_a_woken_long_poll_gathers_what_follows() -> None:
    """Updates made one after another reach a long-polling consumer together (the log bus
    does the same for a program of your own), so there is something to reorder."""
    bus = MemoryBus()
    links = Links("query")
    links.set("bus", link_fault(reorder_rate=1.0))
    linked = LinkedBus(bus, links, random.Random(5))

    async def scenario() -> list[Delivered]:
        reading = asyncio.create_task(linked.read(0, 100, wait=5.0))
        for body in (product(1), product(2), product(3), user(1)):
            await bus.append([body])
            await asyncio.sleep(0.01)
        return (await reading).events

    page = asyncio.run(scenario())
    assert [item.position for item in page][-1] == 4
    assert [v for _, v in versions(page)][:3] == [3, 2, 1], "gathered, then reordered"


def test_the_bus_journal_names_each_misdelivery_and_stays_bounded() -> None:
    """The log bus's Deliveries, per reader: each event handed again is in the journal with
    its type, aggregate and position; the oldest go past JOURNAL_SIZE, counted."""
    doors = Doors("bus", {"query": 40001})
    deliveries = Deliveries(doors)
    assert deliveries.for_reader("query") is None, "no fault: rows handed as they are"
    doors.set("query", link_fault(duplicate_rate=1.0))
    rows = [(n, user(n)) for n in range(1, 1001)]
    handed = deliveries.for_reader("query")
    assert handed is not None
    assert handed(rows[:1]) == rows[:1] and deliveries.journal("query", 10)["kept"] == 0
    again = handed(rows[1:2])
    assert sorted(again) == rows[:2]
    (entry,) = deliveries.journal("query", 10)["entries"]
    assert entry["fault"] == "duplicate" and entry["position"] == 1
    assert (entry["type"], entry["aggregate_type"], entry["aggregate_id"]) == (
        "UserSignedUp", "user", 1)
    for _ in range(11):
        handed(rows)
    journal = deliveries.journal("query", 5)
    assert journal["kept"] == JOURNAL_SIZE and journal["dropped"] > 0
    assert len(journal["entries"]) == 5
    doors.set("query", None)
    assert deliveries.for_reader("query") is None
    assert deliveries.journal("query", 1)["kept"] == JOURNAL_SIZE, "evidence outlives it"
