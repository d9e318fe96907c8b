"""The service protocol as types (docs/protocol.md is its prose): what a program of your own
learns from its environment and its service file, and the JSON Schema of every event it
reads, generated from contracts/events.py so the two cannot disagree."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

import msgspec

from msshop.contracts import events

#: the contract's version: MSSHOP_PROTOCOL and service.json's "protocol"
PROTOCOL = 1

#: the variables a program is started with, and what each holds
ENVIRONMENT: dict[str, str] = {
    "MSSHOP_SERVICE": "the service it runs as, e.g. query",
    "MSSHOP_HOST": "the address to bind: 127.0.0.1",
    "MSSHOP_PORT": "the port to bind",
    "MSSHOP_DATA_DIR": "its own directory, <sandbox>/data/<service>/",
    "MSSHOP_SERVICE_FILE": "<MSSHOP_DATA_DIR>/service.json, mode 0600",
    "MSSHOP_PROTOCOL": "the protocol's version",
}


class BusAddress(TypedDict):
    """service.json's `bus`: the log backend's URL, or the nats servers, the stream, the
    subjects it takes (a wildcard: msshop.<sandbox>.>) and who to sign in as (replies
    under _INBOX.<user>.)."""

    backend: Literal["log", "nats"]
    url: NotRequired[str]
    servers: NotRequired[list[str]]
    stream: NotRequired[str]
    subjects: NotRequired[str]
    user: NotRequired[str]
    password: NotRequired[str]


class ServiceFile(TypedDict):
    """`$MSSHOP_SERVICE_FILE`, written before each start."""

    protocol: int
    service: str
    host: str
    port: int
    data_dir: str
    peers: dict[str, str]
    credential: str
    owner_digest: str
    bus: BusAddress


class EnvironmentVariable(TypedDict):
    name: str
    meaning: str


class ProtocolDocument(TypedDict):
    """`msshop protocol --json`."""

    protocol: int
    environment: list[EnvironmentVariable]
    service_file: dict[str, Any]  # its JSON Schema
    events: dict[str, dict[str, Any]]  # event type -> the JSON Schema of such an event


def typed_event(event_type: str) -> type[msgspec.Struct]:
    """Event, with `type`, `source` and `aggregate_type` fixed to what an event of this type
    carries and `data` typed: what its JSON Schema is made from."""
    aggregate_type, data = events.CATALOGUE[event_type]
    fixed = [("type", Literal[event_type]),
             ("source", Literal[events.OWNERS[event_type]]),
             ("aggregate_type", Literal[aggregate_type])]
    return msgspec.defstruct(
        event_type, [*fixed, ("data", data),
                     ("trace_id", events.Word | None, None),
                     ("parent_span", events.Word | None, None)],
        bases=(events.Envelope,), frozen=True)


def event_schemas() -> dict[str, dict[str, Any]]:
    """Each event type's JSON Schema (2020-12), whole: no references outside itself."""
    return {event_type: msgspec.json.schema(typed_event(event_type))
            for event_type in events.CATALOGUE}


def data_fields(event_type: str) -> list[str]:
    """A type's data: its fields' names, in order (the doc's table; the JSON Schema says
    each one's type)."""
    _, data = events.CATALOGUE[event_type]
    return list(data.__struct_fields__)


def document() -> ProtocolDocument:
    return {"protocol": PROTOCOL,
            "environment": [{"name": name, "meaning": meaning}
                            for name, meaning in ENVIRONMENT.items()],
            "service_file": msgspec.json.schema(ServiceFile),
            "events": event_schemas()}


def events_table() -> str:
    """docs/protocol.md's table of the event types (between its `events-table` markers)."""
    rows = [(f"`{event_type}`", f"`{events.OWNERS[event_type]}`",
             ", ".join(f"`{name}`" for name in data_fields(event_type)))
            for event_type in events.CATALOGUE]
    header = ("Type", "Only from", "`data`")
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(3)]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                       strict=True)) + " |"
             for row in [header, *rows]]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)
