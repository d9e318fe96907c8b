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


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)


def error(message: str) -> None:
    console(stderr=True).print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)


def note(out: Console, message: str) -> None:
    out.print(Text(message), soft_wrap=True)


def service_name(name: str) -> Text:
    return Text(name, style=SERVICE_STYLES.get(name, ""))


def relative(path: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def clock() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
