"""The console, colours by service and status, and the smallest renderers every topic uses.

Colour is decoration only: every fact is in the text, so output piped or under NO_COLOR
(which rich honours) reads the same.
"""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Iterable

from rich.console import Console
from rich.segment import Segment
from rich.text import Text

SERVICE_STYLES = {"users": "cyan", "products": "magenta", "orders": "yellow",
                  "query": "green", "bus": "blue", "supervisor": "bold"}
STATUS_STYLES = {"running": "green", "starting": "yellow", "stopping": "yellow",
                 "stopped": "dim", "crashed": "bold red", "failed": "bold red"}


# Control characters in data (a user's name, a product's title, an error that quotes them)
# are shown escaped, never sent to the terminal: ESC [ … could rewrite the screen. So are
# the invisible ones that change what a line seems to say: a right-to-left override
# (U+202E) turns "txt.exe" around, a zero-width space hides in a name, a line separator
# breaks a line where none is seen (Unicode's bidirectional and zero-width format marks).
_ESCAPED = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
            if code != 0x09}
_INVISIBLE = (0x061C, *range(0x200B, 0x2010), *range(0x2028, 0x202F), *range(0x2060, 0x2070),
              0xFEFF)
_ESCAPED.update({code: f"\\u{code:04x}" for code in _INVISIBLE})


def clean(value: object) -> str:
    """`value` as text with every control character but tab escaped (e.g. \\x1b), and the
    invisible bidirectional and zero-width marks (e.g. \\u202e)."""
    return str(value).translate(_ESCAPED)


def data(value: object, style: str = "") -> Text:
    """Text that came from outside msshop's own words, escaped (see clean)."""
    return Text(clean(value), style=style)


# Spaces at the end of a line, before any style codes that close it.
_TRAILING = re.compile(r" +((?:\x1b\[[0-9;]*m)*)(?=\n)")


class TrimmedConsole(Console):
    """A rich Console whose lines end where their text ends.

    Rich pads a table's cells to the column's width and leaves the space at each point where
    it wraps a paragraph, so lines end in spaces: noise in a diff, a test, a copied answer.
    Everything rich writes (or captures) passes through `_render_buffer`, so trimming there
    catches every table, tree and wrapped paragraph at once. A live display redraws by
    erasing whole lines, so a shorter line leaves nothing behind.
    """

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return _TRAILING.sub(r"\1", super()._render_buffer(buffer))


def terminal(stderr: bool = False) -> Console:
    return TrimmedConsole(stderr=stderr, highlight=False)


def error(message: str) -> None:
    """On stderr: one line however long where a script reads it; on a terminal, wrapped at
    its width, further lines indented."""
    err = terminal(stderr=True)
    lines = wrapped("error: " + clean(message), err.width) if err.is_terminal else [
        "error: " + clean(message)]
    for number, line in enumerate(lines):
        text = Text(line)
        if number == 0:
            text.stylize("bold red", 0, len("error:"))
        err.print(text, soft_wrap=True)


def note(out: Console, message: str, style: str = "") -> None:
    """A sentence of msshop's words, wrapped to the terminal's width, each further line
    indented by two spaces; the data in it is escaped."""
    for line in wrapped(clean(message), out.width):
        out.print(Text(line, style=style), soft_wrap=True)


def wrapped(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` characters, broken at spaces (never inside
    "direct-call"), a word longer than a line cut; further lines indented two spaces more
    than the first."""
    indent = text[:len(text) - len(text.lstrip(" "))] + "  "
    return textwrap.wrap(text, max(width, 20), subsequent_indent=indent,
                         break_on_hyphens=False) or [""]


def service_name(name: str) -> Text:
    return Text(name, style=SERVICE_STYLES.get(name, ""))


def relative(path: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def clock() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
