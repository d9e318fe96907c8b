"""The console, colours by service and status, and the smallest renderers every topic uses.

Colour is decoration only: every fact is in the text, so output piped or under NO_COLOR
(which rich honours) reads the same.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.text import Text

SERVICE_STYLES = {"users": "cyan", "products": "magenta", "orders": "yellow",
                  "query": "green", "bus": "blue", "supervisor": "bold"}
STATUS_STYLES = {"running": "green", "starting": "yellow", "stopping": "yellow",
                 "stopped": "dim", "crashed": "bold red", "failed": "bold red"}


# Control characters in data (a user's name, a product's title, an error that quotes them)
# are shown escaped, never sent to the terminal: ESC [ … could rewrite the screen.
_ESCAPED = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
            if code != 0x09}


def clean(value: object) -> str:
    """`value` as text with every control character but tab escaped (e.g. \\x1b)."""
    return str(value).translate(_ESCAPED)


def data(value: object, style: str = "") -> Text:
    """Text that came from outside msshop's own words, escaped (see clean)."""
    return Text(clean(value), style=style)


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)


def error(message: str) -> None:
    console(stderr=True).print(Text("error: ", style="bold red") + data(message), soft_wrap=True)


def note(out: Console, message: str) -> None:
    """One line of msshop's words; the data in it is escaped."""
    out.print(data(message), soft_wrap=True)


def service_name(name: str) -> Text:
    return Text(name, style=SERVICE_STYLES.get(name, ""))


def relative(path: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def clock() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
