"""The strategies' names, in one place: how user-orders is answered (ReadStrategy) and, as
the writes across services arrive, how a purchase is made.

A StrEnum, so a member is its name wherever a string is wanted (a URL, a JSON document, a
chart's legend) and typer offers the names as the choices of an option. Cheap to import:
the query service, the instruments and the CLI all read it.
"""

from __future__ import annotations

from enum import StrEnum


class ReadStrategy(StrEnum):
    """How "which products did user U order?" is answered."""

    DIRECT_CALL = "direct-call"  # API composition: ask users, orders and products now
    REPLICATED = "replicated"  # the query service's own read model, fed by events
    MONOLITH = "monolith"  # the reference join over every file (breaks encapsulation)

    @property
    def served(self) -> bool:
        """The query service answers it (the monolith's join runs in the CLI)."""
        return self is not ReadStrategy.MONOLITH


#: what the query service serves at GET /user-orders/{user_id}?strategy=…, and so what
#: the bench and the experiments measure side by side
SERVED: tuple[ReadStrategy, ...] = tuple(s for s in ReadStrategy if s.served)


class WriteStrategy(StrEnum):
    """How a purchase takes stock and credit and is recorded (issue 26)."""

    MONOLITH = "monolith"  # one SQLite transaction over the three files (breaks encapsulation)
    DIRECT_CALL = "direct-call"  # orders asks products, then users, over HTTP; gives back
    SAGA = "saga"  # choreography: orders' PENDING order, products' and users' steps by events
    # orchestration (issue 27): orders' orchestrator keeps the saga's state in orders.db and
    # sends products and users commands over the bus, one at a time, and reacts to replies
    SAGA_ORCHESTRATED = "saga-orchestrated"

    @property
    def saga(self) -> bool:
        """The order is recorded pending at once (202) and ended by the saga's steps."""
        return self in (WriteStrategy.SAGA, WriteStrategy.SAGA_ORCHESTRATED)


#: what `msshop buy` uses unless told (purchase.strategy, MSSHOP_PURCHASE_STRATEGY, --write)
DEFAULT_WRITE = WriteStrategy.DIRECT_CALL
