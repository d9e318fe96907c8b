"""Issue 28: the dashboard's feed of events, its parts that need no process: a line of an
event, the filters of GET /events and their one-line refusals, and a feed far behind the
head skipping what a page could not show (the e2e tests follow a real bus)."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import msgspec
import pytest

from msshop.bus.interface import Page
from msshop.contracts import events
from msshop.contracts.events import Delivered
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.services.dashboard.events import (
    BEHIND,
    KEPT,
    SUMMARY,
    EventView,
    Feed,
    filtered,
    summary_of,
    view_of,
)
from msshop.runtime.services.dashboard.guard import Refused


def delivered(position: int, event_type: str = events.USER_SIGNED_UP, source: str = "users",
              data: dict[str, object] | None = None) -> Delivered:
    event = events.make(event_type, source, position, 1, data or {"id": position}, None)
    return Delivered(position, msgspec.Raw(events.encode(event)))


def test_an_event_is_one_short_line() -> None:
    view = view_of(delivered(7, data={"id": 7, "email": "a@example.com", "name": "A"}))
    assert (view.position, view.type, view.source, view.aggregate_id) == (
        7, "UserSignedUp", "users", 7)
    assert view.summary == "id=7 email=a@example.com name=A"
    long = summary_of({"note": "x" * 500})
    assert len(long) == SUMMARY and long.endswith("…")
    broken = view_of(Delivered(8, msgspec.Raw(b'{"not": "an event"}')))
    assert broken.type == "?" and broken.summary.startswith("not an event")


def kept() -> deque[EventView]:
    return deque([view_of(delivered(1)),
                  view_of(delivered(2, events.PRODUCT_CREATED, "products")),
                  view_of(delivered(3))])


def test_the_filters() -> None:
    assert [v.position for v in filtered(kept(), None, None, None)] == [1, 2, 3]
    assert [v.position for v in filtered(kept(), "UserSignedUp", None, None)] == [1, 3]
    assert [v.position for v in filtered(kept(), None, "products", None)] == [2]
    assert [v.position for v in filtered(kept(), "UserSignedUp,ProductCreated", None,
                                         "2")] == [2, 3]
    assert filtered(kept(), "OrderPlaced", "orders", None) == [], "known, none kept"


@pytest.mark.parametrize(("types", "sources", "limit", "words"), [
    ("Nope", None, None, "no event type 'Nope'; known: "),
    (None, "nobody", None, "no event source 'nobody'; known: orders, products, users"),
    (None, None, "0", "limit is a whole number from 1 to 200, not '0'"),
    (None, None, str(KEPT + 1), "limit is a whole number from 1 to 200"),
    (None, None, "ten", "limit is a whole number from 1 to 200, not 'ten'"),
])
def test_a_bad_filter_is_one_line(types: str | None, sources: str | None, limit: str | None,
                                  words: str) -> None:
    with pytest.raises(Refused) as refused:
        filtered(kept(), types, sources, limit)
    assert refused.value.status == 422 and refused.value.message.startswith(words)
    assert "\n" not in refused.value.message


def test_a_feed_far_behind_skips_to_what_a_page_shows(tmp_path: Path) -> None:
    feed = Feed(ServiceContext("ui", tmp_path / "ui.db"), lambda: 1)
    feed.position = 10
    feed._took(Page(11, [delivered(11)], "log-a"))
    assert (feed.position, feed.dropped, [v.position for v in feed.kept]) == (11, 0, [11])
    feed._took(Page(12 + BEHIND, [delivered(12)], "log-a"))  # not yet too far behind
    assert feed.position == 12 and feed.dropped == 0
    feed._took(Page(13 + BEHIND + 50, [delivered(13)], "log-a"))
    assert feed.position == 13 + BEHIND + 50 - KEPT and feed.dropped == BEHIND + 50 - KEPT
    feed._took(Page(5, [], "log-b"))  # another log (replaced): from its head
    assert feed.position == 5 and feed.log == "log-b"
