"""What a command came to, and the one place it is shown: drawn for a person, or printed
as JSON for a script (`--json`).

An Outcome holds both: `document`, whose type (a TypedDict of contracts/outcomes.py or of
the contract it comes from) is the shape docs/cli.md gives, and `draw`, what a person sees
of the same thing. A command builds one and hands it to `emit`; no command chooses between
the two itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

import typer

if TYPE_CHECKING:
    from msshop.render import Console

Document = TypeVar("Document")

#: how the JSON is laid out: indented (a document), one line flushed (a stream's line), or
#: one line with spaces (`status --json` with no sandbox, as scripts already read it)
Layout = Literal["indented", "line", "inline"]


@dataclass(frozen=True, slots=True)
class Outcome(Generic[Document]):
    document: Document
    draw: Callable[[Console], None]
    exit_code: int = 0  # e.g. `wait` timed out (3), `verify` found differences (1)
    #: with --json, what stderr must still say, that the document alone would not make a
    #: script's reader notice (e.g. `seed --wait` that did not catch up)
    complaint: str | None = None
    layout: Layout = "indented"


def emit(outcome: Outcome[Document], as_json: bool) -> None:
    """Show the outcome, then exit with its code (when not 0)."""
    from msshop import render

    if as_json:
        _print_json(outcome)
        if outcome.complaint is not None:
            render.error(outcome.complaint)
    else:
        outcome.draw(render.terminal())
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def emit_each(outcomes: Iterable[Outcome[Document]], as_json: bool) -> None:
    """A stream (`events`, `logs`): each drawn, or printed as a JSON line, as it comes."""
    from msshop import render

    console = None if as_json else render.terminal()
    for outcome in outcomes:
        if console is None:
            render.json_line(outcome.document)
        else:
            outcome.draw(console)


def _print_json(outcome: Outcome[Document]) -> None:
    from msshop import render

    if outcome.layout == "line":
        render.json_line(outcome.document)
    else:
        render.document(outcome.document, indent=2 if outcome.layout == "indented" else None)
