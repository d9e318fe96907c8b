"""direct-call writes (issue 26): before orders commits a purchase, products takes its stock
and users its credit, over HTTP; a purchase one of them refuses gets back what the other
took, over HTTP too.

The steps run one after the other: products takes first and answers the unit price it took
the stock at, and only then can users be asked for quantity x price. One call to each per
batch of purchases (the purchases that arrived together, or a POST /orders/batch).

What this costs, and msshop does not hide it: a purchase needs users and products up; and
if orders dies (or a call times out) between the steps, stock or credit stays taken for a
purchase no order records. `msshop verify` names it, from the ledgers (ledger.py). A take is
keyed by the purchase's request_id, so a retry of the same purchase takes nothing twice
(and finds what a crashed attempt took).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from typing import Protocol

import msgspec

from msshop.contracts.credentials import bearer
from msshop.contracts.limits import MAX_BATCH
from msshop.contracts.takes import (
    CreditTake,
    CreditTakes,
    GiveBack,
    StockTake,
    StockTakes,
    TakeOutcomes,
)
from msshop.runtime.platform.http import HttpError
from msshop.runtime.platform.peers import Peers
from msshop.runtime.platform.tasks import Task, Tasks

log = logging.getLogger("msshop.orders")


class Buying(Protocol):
    """What a purchase says that the takes need (orders' Purchase)."""

    user_id: int
    product_id: int
    quantity: int


class Keys:
    """A key for a purchase sent without a request_id: its take must be keyed too. Unique
    across restarts (a random prefix per process), cheap for a million-order seed."""

    def __init__(self) -> None:
        self._prefix = f"orders-{uuid.uuid4().hex[:16]}-"
        self._numbers: Iterator[int] = count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._numbers)}"


@dataclass(frozen=True)
class Refusal:
    """Why a purchase was refused (HTTP status and the reason), what was taken given back."""

    status: int
    reason: str

    def error(self) -> HttpError:
        return HttpError(self.status, self.reason)


class Ledgers:
    """orders' calls to the ledgers of products and users. Each carries orders' credential:
    only orders may take stock and credit, or give them back (their routes say so)."""

    def __init__(self, peers: Peers, credential: str | None) -> None:
        self.peers = peers
        self.headers = bearer(credential) if credential else None

    async def take(self, service: str, body: StockTakes | CreditTakes) -> TakeOutcomes:
        reply = await self.peers.request("POST", service, f"/{service}/takes",
                                         msgspec.json.encode(body), raw=True,
                                         headers=self.headers)
        if reply.status != 200:
            raise HttpError(502, f"{service} answered HTTP {reply.status}: "
                                 f"{reply.data[:200].decode(errors='replace')}",
                            dependency=service)
        return msgspec.json.decode(reply.data, type=TakeOutcomes)

    async def give_back(self, service: str, purchases: list[str]) -> str | None:
        """Give back what `service` took for `purchases`; why it could not be told, if so."""
        try:
            reply = await self.peers.request(
                "POST", service, f"/{service}/takes/give-back",
                msgspec.json.encode(GiveBack(purchases)), headers=self.headers)
        except HttpError as exc:
            return exc.message
        return None if reply.status == 200 else f"{service} answered HTTP {reply.status}"


class GiveBacks:
    """What orders owes back: takes it could not give back at once (the service down, its
    disk full) are given back in the background until they are, as the process's task
    "give-back" (/health says it is failing, and why, meanwhile). Held in memory only: if
    orders dies first they stay taken, and `msshop verify` names them."""

    def __init__(self, ledgers: Ledgers, tasks: Tasks) -> None:
        self.ledgers = ledgers
        self.tasks = tasks
        self._owed: dict[str, set[str]] = {"products": set(), "users": set()}
        self._wake = asyncio.Event()
        self._task: Task | None = None

    async def start(self) -> None:
        self._task = self.tasks.run("give-back", self._run)

    async def close(self) -> None:
        if self._task is not None:
            await self._task.stop()
        if self.pending():
            log.warning("orders stops owing %d give-back(s): they stay taken; msshop verify "
                        "names them", self.pending())

    def pending(self) -> int:
        return sum(len(keys) for keys in self._owed.values())

    async def give(self, service: str, purchases: list[str]) -> None:
        """Give back now; what cannot be, later (logged once per cause by the task)."""
        if not purchases:
            return
        failure = await self.ledgers.give_back(service, purchases)
        if failure is not None:
            log.warning("orders could not give back what %s took for %d purchase(s) (%s): "
                        "trying again in the background", service, len(purchases), failure)
            self._owed[service].update(purchases)
            self._wake.set()

    async def _run(self) -> None:
        assert self._task is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending():
                for service, keys in self._owed.items():
                    if not keys:
                        continue
                    batch = list(keys)[:MAX_BATCH]
                    failure = await self.ledgers.give_back(service, batch)
                    if failure is None:
                        keys.difference_update(batch)
                        continue
                    self._task.failed(f"{len(keys)} take(s) of {service} not given back yet: "
                                      f"{failure}")
                    await asyncio.sleep(self._task.backoff.next_pause())
            self._task.recovered()


async def take_each(ledgers: Ledgers, owed: GiveBacks, purchases: list[Buying],
                    keys: list[str]) -> list[int | Refusal]:
    """For each purchase (keyed), its unit price in cents once its stock and its credit
    are both taken, or why it was refused (anything taken for it given back). A dependency
    down or failing fails them all (HttpError 502/503), with what was taken given back."""
    try:
        stock = await ledgers.take("products", StockTakes([
            StockTake(key, p.product_id, p.quantity) for p, key in zip(purchases, keys,
                                                                      strict=True)]))
    except HttpError as exc:  # it may have taken before its answer was lost (a timeout)
        if may_have_taken(exc):
            await owed.give("products", keys)
        raise
    answers: list[int | Refusal] = [
        stock.unit_prices_cents.get(p.product_id, 0) for p in purchases]
    for no in stock.refused:
        answers[no.index] = Refusal(no.status, no.reason)
    priced = [i for i, a in enumerate(answers) if isinstance(a, int)]
    if not priced:
        return answers
    try:
        credit = await ledgers.take("users", CreditTakes([
            CreditTake(keys[i], purchases[i].user_id,
                       purchases[i].quantity * _price(answers[i])) for i in priced]))
    except HttpError as exc:
        await owed.give("products", [keys[i] for i in priced])
        if may_have_taken(exc):  # it too may have taken
            await owed.give("users", [keys[i] for i in priced])
        raise
    given_back: list[str] = []
    for no in credit.refused:
        i = priced[no.index]
        answers[i] = Refusal(no.status, no.reason)
        given_back.append(keys[i])
    await owed.give("products", given_back)
    return answers


def may_have_taken(failed: HttpError) -> bool:
    """Whether a failed call of takes may have taken anything: not if the connection was
    refused or the link cut (the request never reached the service: nothing to give back,
    nothing owed while it is down); after a timeout or a broken connection, it may have."""
    return failed.extra.get("failure") not in ("refused", "partition")


def _price(answer: int | Refusal) -> int:
    assert isinstance(answer, int)
    return answer


async def give_back_all(owed: GiveBacks, keys: list[str]) -> None:
    """Give back the stock and the credit of purchases that could not be recorded."""
    await asyncio.gather(owed.give("products", keys), owed.give("users", keys))


def refused_batch(purchases: list[Buying], answers: list[int | Refusal]) -> HttpError:
    """A batch is all or nothing: one error naming what refused it (ids first, as the
    batch's check always did, then stock and credit), "nothing was recorded"."""
    refusals = [(p, a) for p, a in zip(purchases, answers, strict=True)
                if isinstance(a, Refusal)]
    for field, noun in (("product_id", "product"), ("user_id", "user")):
        missing = list(dict.fromkeys(
            getattr(p, field) for p, a in refusals
            if a.status == 422 and a.reason.startswith(f"{field} ")))
        if missing:
            shown = ", ".join(str(i) for i in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            return HttpError(422, f"{field} {shown}{more}: no such {noun}; nothing was "
                                  "recorded")
    first = refusals[0][1]
    more = f" (and {len(refusals) - 1} more refused)" if len(refusals) > 1 else ""
    return HttpError(first.status, f"{first.reason}{more}; nothing was recorded")
