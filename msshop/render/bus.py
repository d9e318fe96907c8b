"""The bus and the read model: the log's events, dead letters, a replay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from msshop.render.console import SERVICE_STYLES, clean, note

if TYPE_CHECKING:  # msgspec is not imported for commands that do not read events
    from msshop.contracts.events import Event
    from msshop.contracts.shop import DeadLetters, Replayed


def event_line(out: Console, position: int, event: Event) -> None:
    """One event on one line: its position, type, source, aggregate and as much of its data
    as fits the terminal (all of it: msshop events --json)."""
    summary = ", ".join(f"{k}={v}" for k, v in list(event.data.items())[:4])
    head = (f"{position:>7} {event.type:<15} {event.source:<9} {event.aggregate_type} "
            f"{event.aggregate_id} v{event.aggregate_version}  ")
    line = clean(head + summary)
    if len(line) > out.width:
        line = line[:max(out.width - 1, 0)] + "…"
    text = Text(line)
    text.stylize("bold", 8, 8 + len(clean(event.type)))
    source_at = 8 + max(len(clean(event.type)), 15) + 1
    text.stylize(SERVICE_STYLES.get(event.source, ""), source_at, source_at + len(event.source))
    out.print(text, soft_wrap=True, no_wrap=True)


def dead_letters(out: Console, page: DeadLetters) -> None:
    if not page["count"]:
        note(out, "no dead letters: the read model applied every event it was given")
        return
    note(out, f"{page['count']:,} dead letter(s); newest first:")
    for item in page["dead_letters"]:
        note(out, f"{item['position']:>7} {item['type'] or '?':<15} {item['reason']}")


def replay_summary(out: Console, result: Replayed) -> None:
    note(out, f"rebuilt the read model from position 0: {result['events']:,} events in "
              f"{result['seconds']:.2f} s ({result['per_second']:,.0f} events/s), swapped in at "
              f"position {result['position']:,} (it was at {result['position_before']:,}), "
              f"{result['dead_letters']:,} dead letter(s)")
