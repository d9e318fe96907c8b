"""Where one sandbox's events live on NATS JetStream: a stream and subjects named for the
sandbox, so that sandboxes sharing one server (bus.url: a class, a team) never meet.

    identity   made once, at a sandbox's first `up`, and kept in data/sandbox.id (a
               restart, `down` and `up` keep it; a new sandbox, or one whose data/ was
               removed, gets a new one)
    stream     msshop-<identity>, unless bus.stream names another; made with the
               identity in its metadata (OWNER_KEY), by which a stream of another
               sandbox is told apart and refused
    subjects   msshop.<identity>.<source>.<type>: the sender and the event's type are in
               the subject, so the server's permissions can say who may publish what
               (senders_rules) and a reader learns who sent an event from its subject

The names are plain data (contracts/): the bus client, the managed server's permissions
and the health probe all read them here.
"""

from __future__ import annotations

import re

ROOT = "msshop"
OWNER_KEY = "msshop.sandbox"  # the stream's metadata: the identity of the sandbox it serves
#: an identity, a stream name, an event type: one token of a subject, one word of a name
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def default_stream(identity: str) -> str:
    return f"{ROOT}-{identity}"


def all_subjects(identity: str) -> str:
    """What the sandbox's stream takes: every subject of this sandbox, no other's."""
    return f"{ROOT}.{identity}.>"


def subject(identity: str, source: str, event_type: str) -> str:
    return f"{ROOT}.{identity}.{source}.{event_type}"


def sender_at(identity: str) -> int:
    """Where the sender's name starts in a subject of this sandbox."""
    return len(ROOT) + len(identity) + 2


def senders_rules(identity: str, service: str) -> tuple[list[str], list[str]]:
    """(allow, deny) for what `service` may publish: its own subjects, but not the types
    another service owns (events.OWNERS). A type nobody owns passes, as on the log bus: no
    read model knows it, and the consumer dead-letters it (`msshop poison`)."""
    from msshop.contracts.events import OWNERS  # not at import: the CLI's status is light

    allow = [f"{ROOT}.{identity}.{service}.*"]
    deny = [subject(identity, service, event_type)
            for event_type, owner in sorted(OWNERS.items()) if owner != service]
    return allow, deny
