"""`msshop logs`: a log line after its service's name (as `docker compose logs` shows
them), the line alone (--no-prefix), or one JSON object per line (--json)."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from rich.text import Text

from msshop.render.console import SERVICE_STYLES, clean

if TYPE_CHECKING:
    from rich.console import Console

    from msshop.runtime.orchestrator.service_logs import LogLine


def log_entry(out: Console, entry: LogLine, width: int | None) -> None:
    """The line as written, escaped; with `width`, after the service's name in a column
    that wide and a bar. Piped, a log line is data: one line, never cut (grep sees it
    whole). On a terminal it is wrapped at the terminal's width, under its own start."""
    prefix = "" if width is None else f"{entry.service:<{width}} | "
    lines = [prefix + clean(entry.line)]
    if out.is_terminal and len(lines[0]) > out.width:
        lines = textwrap.wrap(lines[0], out.width, subsequent_indent=" " * (len(prefix) + 2),
                              break_on_hyphens=False, drop_whitespace=False)
    style = SERVICE_STYLES.get(entry.service.partition("-")[0], "")  # bus-2: as bus
    for number, line in enumerate(lines):
        text = Text(line)
        if number == 0 and prefix:
            text.stylize(style, 0, len(entry.service))
        out.print(text, soft_wrap=True)
