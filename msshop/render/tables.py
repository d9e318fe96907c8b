"""Tables that fit the terminal: when the columns are wider than it, the least useful go.

A table wider than the terminal is worse than a narrower one: rich squeezes every column
and shows pids and ports as `…`. So each table names which columns may go, in which order,
and keeps all the others whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table


@dataclass(frozen=True)
class Column:
    name: str
    justify: Literal["left", "right"] = "left"
    drop: int = 0  # 0: always shown; otherwise dropped to fit, the highest first


def fitted_table(out: Console, columns: Sequence[Column],
                 rows: Sequence[Sequence[RenderableType]], **options: Any) -> Table:
    """A borderless table of `rows` within `out.width`, without the columns that had to go.

    A cell may hold several lines ("\\n"), each measured on its own."""
    keep = list(range(len(columns)))
    while True:
        table = Table(box=None, pad_edge=False, **options)
        for index in keep:
            column = columns[index]
            table.add_column(column.name, justify=column.justify, no_wrap=True)
        for row in rows:
            table.add_row(*(row[index] for index in keep))
        droppable = [index for index in keep if columns[index].drop]
        if not droppable or _width(out, table) <= out.width:
            return table
        keep.remove(max(droppable, key=lambda index: columns[index].drop))


def _width(out: Console, table: Table) -> int:
    """The width the table wants, unclamped (measured within the terminal's width it would
    never be wider)."""
    return Measurement.get(out, out.options.update_width(1_000_000), table).maximum
