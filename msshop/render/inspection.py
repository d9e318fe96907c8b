"""`msshop inspect`: each service's database (its tables' rows, bytes and schemas), what
replication costs in space, and the first rows of one table, within 80 columns.

Every line is built here, cut to the width and stripped of trailing spaces before it is
printed (rich would pad a table's cells to the column's width); colour is decoration only.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from msshop.render.console import clean, data, relative, service_name

if TYPE_CHECKING:
    from msshop.contracts.inspection import (
        Cell,
        DatabaseInfo,
        Inspection,
        ReplicationCost,
        TableInfo,
        TableRows,
    )

WIDTH = 80
GAP = "  "  # between columns
NARROWEST = 6  # a column cut narrower than this says too little: records, one per block
LOOKING = ("every file opened read-only: the operator looking, not a service (no service "
           "opens another's file)")


def database_overview(out: Console, found: Inspection) -> None:
    """Each database's tables; with one service, their schemas; with all, what replication
    costs in space."""
    width = _width(out)
    running = "running" if found["running"] else "not running"
    bus = "NATS JetStream" if found["bus"] == "nats" else "msshop's log"
    _say(out, Text(f"sandbox {clean(found['sandbox'])}", style="bold"), width)
    _say(out, Text(f"{running}; the bus: {bus}"), width)
    _say(out, Text(LOOKING, style="dim"), width)
    if not found["dbstat"]:
        _say(out, Text("this Python's SQLite has no dbstat table: bytes per table are "
                       "unavailable"), width)
    for database in found["databases"]:
        out.print()
        _database(out, database, found["sandbox"], width)
    one = len(found["databases"]) == 1
    if one and found["databases"][0]["tables"]:
        out.print()
        _schemas(out, found["databases"][0]["tables"], width)
    if found["replication"] is not None:
        out.print()
        _replication(out, found["replication"], width)
    out.print()
    hints = "rows: msshop inspect SERVICE --table TABLE"
    _say(out, Text(hints if one else "schemas: msshop inspect SERVICE; " + hints,
                   style="dim"), width)


def table_rows(out: Console, found: TableRows) -> None:
    """The rows as a table if its columns fit in the width, else one block per row."""
    width = _width(out)
    shown, total = len(found["rows"]), found["total_rows"]
    which = ("no rows" if not total else f"all {total:,} rows" if shown == total
             else f"the first {shown:,} of {total:,} rows")
    _say(out, Text.assemble((f"{found['service']}.", "bold"), data(found["table"], "bold"),
                            f": {which} ({relative(found['path'], found['sandbox'])}, "
                            "read-only)"), width)
    if not shown:
        return
    names = [column["name"] for column in found["columns"]]
    numeric = {i for i, name in enumerate(names)
               if all(isinstance(row[name], int | float) or row[name] is None
                      for row in found["rows"])}
    cells = [[_cell(row[name]) for name in names] for row in found["rows"]]
    lines = _grid([data(name, "bold") for name in names], cells, numeric, width)
    if lines is None:
        lines = _records(names, cells, width)
    _print(out, lines)


# --- the parts -------------------------------------------------------------------------------


def _database(out: Console, database: DatabaseInfo, sandbox: str, width: int) -> None:
    head = service_name(database["service"]) + Text(
        f"  {relative(database['path'], sandbox)}")
    if database["exists"]:
        head.append(f"  {database['bytes']:,} bytes (file {database['db_bytes']:,} + wal "
                    f"{database['wal_bytes']:,})")
        if database["opened"] not in (None, "read-only"):  # the first lines say read-only
            head.append(f", {database['opened']}")
    _say(out, head, width)
    if database["note"]:
        _say(out, data(f"  {database['note']}", "yellow"), width)
    if not database["tables"]:
        return
    rows = [[data(table["name"]), Text(f"{table['rows']:,}"), Text(_bytes(table["bytes"])),
             Text(_indexes(table))] for table in database["tables"]]
    header = [Text(name, style="bold") for name in ("table", "rows", "bytes", "indexes")]
    _print(out, _grid(header, rows, {1, 2}, width, indent="  ") or [])


def _indexes(table: TableInfo) -> str:
    count = len(table["indexes"])
    if not count:
        return "-"
    return f"{count}" + (f" ({table['index_bytes']:,} bytes)"
                         if table["index_bytes"] is not None else "")


def _schemas(out: Console, tables: list[TableInfo], width: int) -> None:
    _say(out, Text("schemas", style="bold"), width)
    for table in tables:
        named = Text("  ") + data(table["name"], "bold")
        if table["indexes"]:
            named.append(" (indexes: " + clean(", ".join(table["indexes"])) + ")")
        _say(out, named, width, indent="    ")
        first, _, rest = table["schema"].strip().partition("\n")
        for line in [first, *textwrap.dedent(rest).splitlines()]:
            _say(out, data(f"    {line.rstrip()}", "dim"), width, indent="      ")


def _replication(out: Console, cost: ReplicationCost, width: int) -> None:
    _say(out, Text("what replication costs in space (pages in use, indexes included)",
                   style="bold"), width)
    header = [Text(name, style="bold") for name in
              ("read model (query.db)", "bytes", "copies", "bytes", "ratio")]
    rows = [[Text(pair["replica"]), Text(_bytes(pair["replica_bytes"])), Text(pair["source"]),
             Text(_bytes(pair["source_bytes"])), Text(_ratio(pair["ratio"]))]
            for pair in cost["tables"]]
    rows.append([Text("all of it", style="bold"), Text(_bytes(cost["read_model_bytes"])),
                 Text("the sources"), Text(_bytes(cost["source_bytes"])),
                 Text(_ratio(cost["ratio"]), style="bold")])
    _print(out, _grid(header, rows, {1, 3, 4}, width, indent="  ") or [])
    bus_log = ("in JetStream's store" if cost["bus_log_bytes"] is None
               and "JetStream" in (cost["note"] or "") else _bytes(cost["bus_log_bytes"])
               + " bytes")
    _say(out, Text(f"  the bus's log (bus.db events): {bus_log}; the outboxes: "
                   f"{_bytes(cost['outbox_bytes'])} bytes"), width, indent="    ")
    if cost["note"]:
        _say(out, data(f"  {cost['note']}", "yellow"), width, indent="    ")


def _cell(value: Cell) -> Text:
    if value is None:
        return Text("NULL", style="dim")
    return data(value)


def _bytes(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


# --- lines within the width ------------------------------------------------------------------


def _width(out: Console) -> int:
    return min(out.width, WIDTH)


def _grid(header: list[Text], rows: list[list[Text]], right: set[int], width: int,
          indent: str = "") -> list[Text] | None:
    """Aligned columns within `width`: the widest column cut first (its long cells end in
    "…"); None if a column would have to be narrower than NARROWEST."""
    widths = [min(max(cell.cell_len for cell in column), width)
              for column in zip(header, *rows, strict=True)]
    room = width - len(indent) - len(GAP) * (len(widths) - 1)
    while sum(widths) > room:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= NARROWEST:
            return None
        widths[widest] -= 1
    lines = []
    for row in [header, *rows]:
        line = Text(indent)
        for number, (cell, cut) in enumerate(zip(row, widths, strict=True)):
            fitted = cell.copy()
            fitted.truncate(cut, overflow="ellipsis")
            pad = " " * (cut - fitted.cell_len)
            line.append_text(Text(pad) + fitted if number in right else fitted + Text(pad))
            line.append(GAP)
        lines.append(line)
    return lines


def _records(names: list[str], rows: list[list[Text]], width: int) -> list[Text]:
    """One block per row, a line per column (name, then value cut to the width): for tables
    with more columns than 80 columns can show side by side."""
    label = min(max(len(name) for name in names), width // 3)
    lines = []
    for number, row in enumerate(rows, start=1):
        lines.append(Text(f"row {number}", style="bold"))
        for name, cell in zip(names, row, strict=True):
            name_cell = Text(f"  {clean(name)}")
            name_cell.truncate(label + 2, overflow="ellipsis", pad=True)
            value = cell.copy()
            value.truncate(width - label - 4, overflow="ellipsis")
            lines.append(name_cell + Text(GAP) + value)
    return lines


def _say(out: Console, text: Text, width: int, indent: str = "  ") -> None:
    """A line of words wrapped within `width`, further lines indented."""
    for number, line in enumerate(text.wrap(out, width - len(indent))):
        _print(out, [line if number == 0 else Text(indent) + line])


def _print(out: Console, lines: list[Text]) -> None:
    for line in lines:
        trimmed = line.copy()
        trimmed.rstrip()
        out.print(trimmed, no_wrap=True, overflow="ignore", crop=False, soft_wrap=True)
