"""The service protocol: the contract a program of your own follows (protocol), and a
starting point for one (new)."""

from __future__ import annotations

import typer

from msshop.cli.emit import Outcome, emit
from msshop.cli.options import json_option


def protocol(
    as_json: bool = json_option("The protocol as a typed document: its version, the "
                                "environment, service.json's and each event's JSON Schema."),
) -> None:
    """Print the service protocol: what a program must do to run as one of the services.

    On a terminal, rendered; piped, the Markdown of docs/protocol.md.

    \b
    Example: msshop protocol --json
    """
    from msshop import render
    from msshop.instruments import protocol as contract

    if as_json:
        emit(Outcome(contract.document(), lambda out: None), True)
        return
    page = contract.text()
    emit(Outcome(page, lambda out: render.protocol_page(out, page)), False)


def new(
    kind: str = typer.Argument(..., metavar="service", help="what to make: service"),
    service: str = typer.Argument(..., metavar="NAME",
                                  help="the service it replaces: query"),
    directory: str = typer.Argument(..., metavar="DIR",
                                    help="a new (or empty) directory to write it into"),
    lang: str = typer.Option("python", "--lang", metavar="python|node",
                             help="the language of the reference program to start from"),
    as_json: bool = json_option(),
) -> None:
    """Write a starting point for a service of your own: the reference program and its README.

    Says how to run it as msshop's service.

    \b
    Example: msshop new service query --lang node my-query
    """
    from msshop import render
    from msshop.instruments.protocol import new_service

    made = new_service(kind, service, lang, directory)
    emit(Outcome(made, lambda out: render.new_service(
        out, made["directory"], made["files"], made["service"], made["run"])), as_json)
