"""A purchases scenario (issue 27): every write strategy buys side by side under the same
faults; then each is checked on its own cast, and the per-second figures are made.

The check, per strategy, once the run has healed and every service has caught up
(checking.caught_up: the outboxes sent, the saga's steps at the bus's head):

- `verify`'s invariant (instruments/invariant.py), kept to the strategy's products and
  users: stock and credit equal what was given minus what confirmed orders hold, each
  taken once; nothing held for a rejected order or for no order; nothing still pending;
- every purchase a client saw confirmed is in orders.db exactly once, confirmed; every one
  it saw rejected is not confirmed there.

direct-call under crashes is expected to end `invalid` (what it leaked, named): the cost of
direct calls, shown rather than hidden.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from msshop.contracts.errors import MsshopError
from msshop.contracts.progress import Progress
from msshop.contracts.strategies import WriteStrategy
from msshop.instruments.asking import databases as databases_of
from msshop.instruments.checking import caught_up
from msshop.instruments.client import ShopClient
from msshop.instruments.experiments.nemesis import Nemesis
from msshop.instruments.experiments.purchases import Bought, Cast, PurchaseLoad, Slack
from msshop.instruments.experiments.report import (
    ANSWERS,
    Distribution,
    StrategySecond,
    Verdict,
    WriteFigures,
    WriteOutcome,
    WriteSecond,
    WritesReport,
    worst,
)
from msshop.instruments.experiments.scenario import Scenario
from msshop.instruments.invariant import Scope, breaches
from msshop.runtime.orchestrator.state import State

USERS = 8  # each strategy's own
PRODUCTS = 4
SHOWN = 5  # problems named one by one per strategy; the rest are counted
STRATEGIES: tuple[WriteStrategy, ...] = tuple(WriteStrategy)  # monolith, the reference, first


def cast(client: ShopClient, tag: str, scenario: Scenario) -> dict[WriteStrategy, Cast]:
    """Each strategy's users and products, new for the run."""
    casts: dict[WriteStrategy, Cast] = {}
    for strategy in STRATEGIES:
        users = client.add_batch("users", [
            {"email": f"{tag}-{strategy}-{n}@experiment.example", "name": f"{strategy} {n}",
             "credit": scenario.credit} for n in range(USERS)])
        products = client.add_batch("products", [
            {"title": f"{strategy} item {n}", "price": 1.5 + n, "stock": scenario.stock,
             "sku": f"{tag}-{strategy}-{n}"} for n in range(PRODUCTS)])
        casts[strategy] = Cast(tuple(users["ids"]), tuple(products["ids"]))
    return casts


def run_in(state: State, nemesis: Nemesis, scenario: Scenario, client: ShopClient,
           tell: Callable[[str], None], progress: Progress | None = None) -> WritesReport:
    from msshop.instruments.experiments.run import RECOVERY, announce, drive

    tag = f"w{int(time.time() * 1000):x}"
    casts = cast(client, tag, scenario)
    caught_up(client, timeout=RECOVERY)
    files = databases_of(state)
    load = PurchaseLoad(state.services["orders"].url, files, casts, scenario.purchase_rate,
                        scenario.quantity, tag)
    announce(scenario, tell, f"{scenario.purchase_rate:g} purchases/s by each write strategy "
                             f"({', '.join(STRATEGIES)})")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    windows, unknown, recovered_in_s = asyncio.run(
        drive(load, nemesis, scenario, client, tell, settle=10.0, progress=progress))
    tell("checking each strategy's purchases and its part of the invariant")
    outcomes = {str(s): check(files, s, casts[s], load.recorded.bought, unknown)
                for s in STRATEGIES}
    return {
        "workload": "purchases", "scenario": scenario.name, "title": scenario.title,
        "shows": scenario.shows, "bus": state.bus.backend, "started_at": started_at,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "seconds": scenario.seconds, "purchase_rate": scenario.purchase_rate,
        "faults": windows, "strategies": [str(s) for s in STRATEGIES],
        "timeline": timeline(scenario.seconds, load),
        "figures": {str(s): figures([b for b in load.recorded.bought if b.strategy is s])
                    for s in STRATEGIES},
        "outcomes": outcomes, "recovered_in_s": recovered_in_s,
        "verdict": worst([o["verdict"] for o in outcomes.values()])}


# --- the check -------------------------------------------------------------------------------


def check(files: dict[str, Path], strategy: WriteStrategy, own: Cast,
          bought: list[Bought], unknown: list[str]) -> WriteOutcome:
    mine = [b for b in bought if b.strategy is strategy]
    confirmed = [b.request_id for b in mine if b.ended == "confirmed"]
    scope = f"products {_span(own.products)}, users {_span(own.users)}"
    if unknown:
        return {"verdict": "unknown", "problems": list(unknown),
                "checked": {"confirmed": len(confirmed), "stored_once": 0, "scope": scope}}
    try:
        problems = breaches(files, scope=Scope(own.products, own.users))
        stored = _stored(files["orders"], [b.request_id for b in mine])
    except (MsshopError, sqlite3.Error) as exc:
        return {"verdict": "unknown", "problems": [f"the check could not finish: {exc}"],
                "checked": {"confirmed": len(confirmed), "stored_once": 0, "scope": scope}}
    stored_once = 0
    for purchase in mine:
        found = stored.get(purchase.request_id, [])
        if purchase.ended == "confirmed":
            if found == ["confirmed"]:
                stored_once += 1
            elif not found:
                problems.append(f"purchase {purchase.request_id}: confirmed to the client, "
                                "but no order records it")
            else:
                problems.append(f"purchase {purchase.request_id}: confirmed to the client, "
                                f"but stored as {', '.join(found)}")
        elif purchase.ended == "rejected" and "confirmed" in found:
            problems.append(f"purchase {purchase.request_id}: rejected to the client, but "
                            "confirmed in orders.db")
    if len(problems) > SHOWN:
        problems = [*problems[:SHOWN], f"and {len(problems) - SHOWN:,} more"]
    verdict: Verdict = "invalid" if problems else "valid"
    return {"verdict": verdict, "problems": problems,
            "checked": {"confirmed": len(confirmed), "stored_once": stored_once,
                        "scope": scope}}


def _stored(orders: Path, keys: list[str]) -> dict[str, list[str]]:
    """Each purchase's orders' statuses, by its request id (read-only, as verify reads)."""
    found: dict[str, list[str]] = {}
    with closing(sqlite3.connect(f"file:{quote(str(orders))}?mode=ro", uri=True,
                                 timeout=5.0)) as conn:
        for key, status in conn.execute(
                "SELECT request_id, status FROM orders WHERE request_id IN "
                "(SELECT value FROM json_each(?))", (json.dumps(keys),)):
            found.setdefault(key, []).append(status)
    return found


def _span(ids: tuple[int, ...]) -> str:
    return f"{min(ids)}-{max(ids)}" if ids else "none"


# --- the figures -----------------------------------------------------------------------------


def timeline(seconds: float, load: PurchaseLoad) -> list[WriteSecond]:
    made: list[WriteSecond] = []
    for t in range(int(-(-seconds // 1))):
        sent = [b for b in load.recorded.bought if t <= b.t < t + 1]
        slack = [s for s in load.recorded.slack if t <= s.t < t + 1]
        made.append({"t": t, "strategies": {
            str(s): _second([b for b in sent if b.strategy is s], slack, str(s))
            for s in STRATEGIES}})
    return made


def _second(sent: list[Bought], slack: list[Slack], strategy: str) -> StrategySecond:
    ended = [ms for b in sent if (ms := b.outcome_ms) is not None]
    last = slack[-1] if slack else None
    return {"answered": _counts([b.answered for b in sent]),
            "ended": _counts([b.ended for b in sent]),
            "outcome_p50_ms": round(statistics.median(ended), 3) if ended else None,
            "outcome_max_ms": round(max(ended), 3) if ended else None,
            "pending_orders": last.pending.get(strategy) if last else None,
            "stock_held": last.held.get(strategy) if last else None}


def _counts(answers: list[str]) -> dict[str, int]:
    counted = Counter(answers)
    return {answer: counted.get(answer, 0) for answer in ANSWERS}


def figures(mine: list[Bought]) -> WriteFigures:
    ended = Counter(b.ended for b in mine)
    told_pending = [b for b in mine if b.answered == "pending"]
    reasons = Counter(_reason(b.reason) for b in mine if b.ended == "rejected")
    return {"sent": len(mine), "confirmed": ended["confirmed"], "rejected": ended["rejected"],
            "pending": ended["pending"], "failed": ended["failed"],
            "answered_pending": len(told_pending),
            "outcome_ms": distribution([ms for b in mine if (ms := b.outcome_ms) is not None]),
            "pending_for_ms": distribution([ms for b in told_pending
                                            if (ms := b.outcome_ms) is not None]),
            "reasons": dict(reasons.most_common())}


def _reason(reason: str | None) -> str:
    """A rejection's kind: its words before the first ':' (the ids after it differ)."""
    return (reason or "no reason given").split(":")[0]


def distribution(values: list[float]) -> Distribution:
    ordered = sorted(values)

    def at(share: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 3) \
            if ordered else None

    return {"count": len(ordered), "p50": at(0.5), "p99": at(0.99),
            "max": round(ordered[-1], 3) if ordered else None}

