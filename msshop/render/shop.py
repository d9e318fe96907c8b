"""The shop: a user signed up, the catalogue, an order placed, seeding's progress and report,
faults injected."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from msshop.render.console import data, error, note

if TYPE_CHECKING:
    from msshop.contracts.outcomes import DashboardAddress, SagasReport
    from msshop.contracts.shop import ChaosAnswer, Order, ProductPage, Trespassed, User
    from msshop.contracts.status import ChaosState, LinkFault
    from msshop.instruments.seed import Replication, SeedReport


def user(out: Console, user: User) -> None:
    note(out, f"user {user['id']}: {user['name']} <{user['email']}>")


def products(out: Console, page: ProductPage) -> None:
    table = Table(box=None, pad_edge=False)
    table.add_column("id", justify="right")
    table.add_column("title")
    table.add_column("price", justify="right")
    table.add_column("stock", justify="right")
    table.add_column("sku", style="dim")
    for product in page["products"]:
        table.add_row(str(product["id"]), data(product["title"]), f"{product['price']:.2f}",
                      str(product["stock"]), data(product["sku"] or ""))
    out.print(table)
    if page.get("next_after"):
        out.print(Text(f"more: msshop products --after {page['next_after']}", style="dim"))


def order(out: Console, order: Order, created: bool) -> None:
    verb = "placed" if created else "already placed (same request id)"
    note(out, f"order {order['id']} {verb}: user {order['user_id']} bought "
              f"{order['quantity']} x product {order['product_id']} at "
              f"{order['unit_price']:.2f} = {order['total']:.2f}")
    event = order.get("event")
    if event and event["position"]:
        note(out, f"event {event['type']} is at bus position {event['position']}; read your "
                  f"write with: msshop query --user {order['user_id']} --after "
                  f"{event['position']}")
    elif event:
        note(out, f"event {event['type']} waits in the orders outbox (the bus has not "
                  "stored it yet); see: msshop status")


def sagas(out: Console, report: SagasReport) -> None:
    """The sagas not finished, the oldest first: a table that fits 80 columns."""
    if not report["count"]:
        note(out, "no saga is unfinished: every order is confirmed or rejected")
        return
    table = Table(box=None, pad_edge=False)
    table.add_column("order", justify="right")
    table.add_column("age s", justify="right")
    table.add_column("saga")
    table.add_column("waits for")
    table.add_column("step")
    for saga in report["sagas"]:
        kind = "orchestrated" if saga["strategy"] == "saga-orchestrated" else "choreographed"
        table.add_row(str(saga["order_id"]), f"{saga['age_seconds']:,.1f}", kind,
                      saga["waits_for"], saga["step"])
    out.print(table)
    more = report["count"] - report["shown"]
    said = f"{report['count']:,} saga(s) pending" + (
        f", the {report['shown']} oldest shown" if more else "")
    note(out, f"{said}; see msshop status for the services they wait for")


def saga_order(out: Console, order: Order, created: bool, strategy: str = "saga") -> None:
    """A saga's purchase: its order as it stands (pending, confirmed or rejected)."""
    again = "" if created else " (same request id)"
    what = (f"user {order['user_id']} buys {order['quantity']} x product "
            f"{order['product_id']}")
    if order["status"] == "confirmed":
        note(out, f"order {order['id']} confirmed ({strategy}){again}: {what} at "
                  f"{order['unit_price']:.2f} = {order['total']:.2f}")
    elif order["status"] == "rejected":
        note(out, f"order {order['id']} rejected ({strategy}){again}: {what}; nothing stays taken")
        error(order["reason"] or "rejected")
    else:
        note(out, f"order {order['id']} pending ({strategy}){again}: {what}; products and users "
                  "have not said yet (wait for it with --wait)")


def rejected(out: Console, reason: str, strategy: str) -> None:
    """A purchase refused: nothing was taken, no order was recorded. The reason is the
    error line (stderr), as the service words it."""
    note(out, f"purchase rejected ({strategy}); nothing was taken")
    error(reason)


@contextmanager
def seed_progress(out: Console) -> Iterator[Callable[[str, int, int], None]]:
    # here, not at the top: `status`, `buy`… render from this module and draw no bar
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=out, transient=False,
                        disable=not out.is_terminal)
    tasks: dict[str, Any] = {}

    def update(what: str, done: int, total: int) -> None:
        """`what`: users, products, orders, or catch-up (events applied by the read model
        since the wait began, of those there were to apply: that total may grow)."""
        if what not in tasks:
            tasks[what] = progress.add_task(what, total=total)
        progress.update(tasks[what], completed=done, total=total)

    with progress:
        yield update


def seed_report(out: Console, report: SeedReport, waited: bool) -> None:
    """A line per kind of data, then where replication is (`waited`: after --wait); a
    wait that failed is an error line on stderr."""
    for what, seeded in (("users", report["users"]), ("products", report["products"]),
                         ("orders", report["orders"])):
        out.print(Text(
            f"{what:<9} {seeded['created']:>8,} created, {seeded['existing']:>8,} "
            f"already there, {seeded['seconds']:6.2f} s ({seeded['rate']:,.0f}/s)"))
    replication = report["replication"]
    if waited and replication["state"] != "caught-up":
        error(seed_wait_failed(replication))
    else:
        note(out, seed_replication(replication, waited))


def seed_replication(replication: Replication, waited: bool) -> str:
    """Where replication is, in a sentence, and what to do about it."""
    head = replication["bus_head"]
    at = f", at bus position {head:,}" if head is not None else ""
    if replication["state"] == "caught-up":
        if waited:
            return (f"the read model caught up in {replication['waited_ms'] / 1000:.1f} s"
                    f"{at}")
        return f"replication is caught up: the read model has every event{at}"
    # what is behind where, as `msshop wait --for caught-up` words it (no sum: the outboxes
    # and the bus are looked at one after the other, so an event sent between is in both)
    why = "; ".join(replication["missing"])
    if replication["state"] == "catching-up":
        return (f"replication is catching up, the read model does not have every event yet: "
                f"{why}; wait for it with: msshop wait --for caught-up (or seed with --wait)")
    head_words = f" (the bus is at position {head:,})" if head is not None else ""
    if replication["down"]:
        down = replication["down"][0]
        return (f"replication cannot catch up: {why}{head_words}; start it with: msshop "
                f"start {down}, then wait with: msshop wait --for caught-up")
    return f"replication cannot catch up: {why}{head_words}"


def seed_wait_failed(replication: Replication) -> str:
    """Why --wait ended without the read model caught up (the command exits 1 or 3)."""
    why = "; ".join(replication["missing"])
    if replication["state"] == "timed-out":
        return (f"the read model did not catch up within "
                f"{replication['waited_ms'] / 1000:.0f} s: {why}; see: msshop status, or "
                "wait longer with: msshop wait --for caught-up --timeout S")
    if replication["down"]:
        return (f"the read model cannot catch up: {why}; start it with: msshop start "
                f"{replication['down'][0]}")
    return f"the read model cannot catch up: {why}"


def reset_note(out: Console) -> None:
    note(out, "reset: every service's data was deleted")


def trespass_refusal(out: Console, answer: Trespassed) -> None:
    service, into = answer["service"], answer["into"]
    if answer.get("held") is False:  # a program of your own opened it: the rule is broken
        error(trespass_broken(answer))
        out.print(data(answer["tried"]), soft_wrap=True)
        note(out, f"its log says so too: msshop logs {service}")
        return
    note(out, f"{service} tried to open {into}.db, the {into} service's file;")
    if "held" in answer:  # a program of your own, refused by the operating system
        note(out, f"the operating system refused ({answer.get('how', '')}):")
    else:
        note(out, "the isolation guard refused:")
    out.print(data(answer["refused"]), soft_wrap=True)  # one line: it quotes whole paths
    note(out, f"nothing was opened; {service}'s log says so too: msshop logs {service}")


def trespass_broken(answer: Trespassed) -> str:
    """A program of your own read another service's file: nothing held the rule."""
    return (f"{answer['service']} opened and read {answer['into']}'s file "
            f"({answer.get('how', '')}): nothing refused it, the isolation rule did not hold")


def poison_note(out: Console, position: int) -> None:
    note(out, f"a Poison event is at bus position {position:,}; no read model knows that")
    note(out, "type, so the query service dead-letters it and goes on; see: msshop deadletters")


def chaos(out: Console, service: str, answer: ChaosAnswer, to: str | None = None) -> None:
    """What is injected now, into `service`'s answers and its links; `to`: the link just
    changed (named even when it has no fault left)."""
    now, links = answer["chaos"], answer.get("links", {})
    if to is not None and to not in links:
        note(out, f"{service} -> {to}: no faults")
    elif not now and not links:
        note(out, f"{service}: no faults")
    if now and (words := fault_words(now)):
        note(out, f"{service}: " + ", ".join(words))
    for callee, fault in links.items():
        for line in fitted(f"{service} -> {callee}:", link_words(fault)):
            note(out, line)
    if to is not None and to in links:
        note(out, f"clear with: msshop chaos {service} --to {to} --clear")
    elif now or links:
        note(out, f"clear {'the rest ' if to else ''}with: msshop chaos {service} --clear")


def fault_words(fault: ChaosState) -> list[str]:
    """A service's faults in words, only those it has (msshop status shows them too)."""
    words = []
    if fault["latency_ms"] or fault["jitter_ms"]:
        words.append(f"every request delayed {fault['latency_ms']:g} ms"
                     + (f" (+0..{fault['jitter_ms']:g} ms)" if fault["jitter_ms"] else ""))
    if fault["error_rate"]:
        words.append(f"{fault['error_rate']:.0%} answered 503")
    return words


def link_words(fault: LinkFault) -> list[str]:
    """A link's faults in words, one phrase each (msshop status shows them too)."""
    words = []
    if fault["latency_ms"] or fault["jitter_ms"]:
        words.append(f"each call delayed {fault['latency_ms']:g} ms "
                     f"(+0..{fault['jitter_ms']:g} ms)")
    rate = fault["error_rate"]
    if rate >= 1:
        words.append("every call fails (a partition)")
    elif rate:
        words.append(f"{rate:.0%} of calls fail")
    if fault["duplicate_rate"]:
        words.append(f"{fault['duplicate_rate']:.0%} of the events read handed over again, "
                     "out of order")
    if fault.get("reorder_rate"):
        words.append(f"{fault.get('reorder_rate', 0):.0%} of the updates read together "
                     "handed newest first")
    if fault.get("redeliver_rate"):
        words.append(f"{fault.get('redeliver_rate', 0):.0%} of the events read handed over "
                     "again, late")
    return words


def fitted(head: str, phrases: list[str], width: int = 80) -> list[str]:
    """`head` and the phrases on one line if it fits in `width`, else one phrase a line."""
    line = f"{head} {', '.join(phrases)}"
    return [line] if len(line) <= width else [head, *(f"  {phrase}" for phrase in phrases)]


def dashboard_address(out: Console, address: DashboardAddress) -> None:
    """The login address alone on its line (to be copied whole), then what it is."""
    out.print(address["login"], soft_wrap=True, markup=False, highlight=False)
    note(out, f"the dashboard of this sandbox: open the address above in a browser on this "
              f"machine (it logs you in; the token is new each time the dashboard starts), "
              f"then {address['url']}")
