"""Reading the bus's log from the CLI: a page of events, or --follow with long-polls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from msshop.instruments.client import ShopClient

FOLLOW_WAIT_MS = 1000


def read(client: ShopClient, after: int, limit: int, follow: bool
         ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position, event) from the bus after `after`; with `follow`, until Ctrl-C."""
    position = after
    try:
        while True:
            wait = FOLLOW_WAIT_MS if follow else 0
            page = client.request("bus", "GET", f"/events?after={position}&limit="
                                  f"{min(limit, 1000) if not follow else 1000}&wait_ms={wait}")
            for item in page["events"]:
                yield item["position"], item["event"]
                position = item["position"]
                if not follow:
                    limit -= 1
                    if limit == 0:
                        return
            if not follow and (not page["events"] or position >= page["head"]):
                return
    except KeyboardInterrupt:
        return
