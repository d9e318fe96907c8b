"""The checker: once the run has healed, is every purchase a client saw confirmed stored
once, and in the read model once, and does `verify` find the read model equal to the
monolith's join? valid, invalid (what broke) or unknown (why it could not tell)."""

from __future__ import annotations

from collections import Counter, defaultdict

from msshop.contracts.errors import MsshopError
from msshop.contracts.strategies import ReadStrategy
from msshop.instruments.asking import Questioner
from msshop.instruments.checking import verify
from msshop.instruments.client import Refused, ShopClient
from msshop.instruments.experiments.report import Checked, Outcome
from msshop.instruments.experiments.workload import Purchase

SHOWN = 5  # problems named one by one; the rest are counted


def check(questioner: Questioner, purchases: list[Purchase], recovered_in_s: float | None,
          unknown: list[str]) -> Outcome:
    """`unknown`: what already kept the run from being judged (a fault not healed, a read
    model that did not catch up); then only what could still be looked at is checked."""
    confirmed: dict[int, list[int]] = defaultdict(list)  # user -> confirmed order ids
    for purchase in purchases:
        if purchase.order_id is not None:
            confirmed[purchase.user_id].append(purchase.order_id)
    checked: Checked = {"confirmed": sum(map(len, confirmed.values())), "stored": 0,
                        "replicated": 0, "verified_users": 0}
    problems: list[str] = []
    if unknown:
        return {"verdict": "unknown", "problems": unknown, "recovered_in_s": recovered_in_s,
                "checked": checked}
    client = questioner.client
    try:
        for user, order_ids in sorted(confirmed.items()):
            stored = Counter(o["id"] for o in client.orders_of(user))
            replicated = Counter(line["order_id"] for line in _replicated(client, user))
            for order_id in order_ids:
                problems += _once(order_id, stored[order_id], "the orders service")
                problems += _once(order_id, replicated[order_id], "the read model")
                checked["stored"] += stored[order_id] == 1
                checked["replicated"] += replicated[order_id] == 1
        verified = verify(questioner, timeout=10)
        checked["verified_users"] = verified.users
        for user, found in sorted(verified.differences.items()):
            problems += [f"verify: user {user}: {what}" for what in found]
    except MsshopError as exc:
        return {"verdict": "unknown", "problems": [f"the check could not finish: "
                                                   f"{exc.message}"],
                "recovered_in_s": recovered_in_s, "checked": checked}
    if len(problems) > SHOWN:
        problems = [*problems[:SHOWN], f"and {len(problems) - SHOWN} more"]
    return {"verdict": "invalid" if problems else "valid", "problems": problems,
            "recovered_in_s": recovered_in_s, "checked": checked}


def _once(order_id: int, times: int, where: str) -> list[str]:
    if times == 1:
        return []
    if times == 0:
        return [f"confirmed order {order_id} is missing from {where}"]
    return [f"confirmed order {order_id} is in {where} {times} times"]


def _replicated(client: ShopClient, user: int) -> list[dict[str, int]]:
    answer = client.user_orders(user, ReadStrategy.REPLICATED)
    if isinstance(answer, Refused):
        raise MsshopError(f"query refused user {user}'s replicated answer: {answer.error}")
    return [{"order_id": line["order_id"]} for line in answer["orders"]]
