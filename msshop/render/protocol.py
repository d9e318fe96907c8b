"""The service protocol: its page for a person (rendered on a terminal, the Markdown itself
when piped, so `msshop protocol > protocol.md` is the page), and a new service's note."""

from __future__ import annotations

from rich.console import Console
from rich.markdown import Markdown

from msshop.render.console import data


def protocol_page(out: Console, text: str) -> None:
    if out.is_terminal:
        out.print(Markdown(text, code_theme="ansi_dark", hyperlinks=False))
    else:
        out.file.write(text)


def new_service(out: Console, directory: str, files: list[str], service: str,
                run: str) -> None:
    out.print(data(f"wrote {', '.join(files)} into {directory}"), soft_wrap=True)
    out.print(f"run it as msshop's {service} service:")
    out.print(data(f"  {run}"), soft_wrap=True)
