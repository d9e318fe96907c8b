"""The shop itself: sign a user up, list products, buy, and fill it with data (seed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from msshop.cli.app import flags, settings
from msshop.cli.emit import Outcome, emit
from msshop.cli.options import check_view, json_option, view_option
from msshop.contracts.errors import UsageError
from msshop.contracts.limits import MAX_ID, MAX_QUANTITY
from msshop.contracts.strategies import WriteStrategy

WAIT = 10.0  # seconds `buy --wait` waits for a saga's outcome unless --timeout says

if TYPE_CHECKING:
    from msshop.contracts.outcomes import Purchase
    from msshop.instruments.client import ShopClient
    from msshop.instruments.purchase import Bought
    from msshop.render import Console


def client(ctx: typer.Context) -> ShopClient:
    """A client of the running sandbox (one line and exit 1 when none runs)."""
    from msshop.instruments.client import ShopClient
    from msshop.runtime.orchestrator import lifecycle

    return ShopClient(lifecycle.running_state(settings(ctx)))


def signup(
    ctx: typer.Context,
    email: str = typer.Option(..., "--email", help="Unique email address."),
    name: str = typer.Option(..., "--name", help="The person's name."),
    credit: float | None = typer.Option(
        None, "--credit", metavar="AMOUNT",
        help="Credit to start with (purchases take it) [default: the shop's, 1000.00]."),
    trace: bool = typer.Option(False, "--trace",
                               help="Follow the write to the read model and show its trace."),
    view: str = view_option("With --trace: a call tree, a timeline, or both."),
    as_json: bool = json_option(),
) -> None:
    """Sign a user up.

    \b
    Example: msshop signup --email ada@example.com --name 'Ada L' --credit 50
    """
    from msshop import render
    from msshop.contracts.outcomes import SignUp

    check_view(view)
    if not trace:
        user = client(ctx).signup(email, name, credit=credit)
        emit(Outcome(SignUp(user=user), lambda out: render.user(out, user)), as_json)
        return
    from msshop.instruments import journey
    from msshop.runtime.orchestrator import lifecycle

    signed = journey.signup(lifecycle.running_state(settings(ctx)), email, name, credit)

    def draw(out: render.Console) -> None:
        render.user(out, signed.user)
        render.journey(out, signed.journey, view)

    emit(Outcome(SignUp(user=signed.user, journey=render.journey_document(signed.journey)),
                 draw), as_json)


def products(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="How many to list."),
    after: int = typer.Option(0, "--after", min=0, max=MAX_ID,
                              help="List products after this id."),
    as_json: bool = json_option(),
) -> None:
    """List products.

    \b
    Example: msshop products --limit 10
    """
    from msshop import render

    page = client(ctx).products(limit, after)
    emit(Outcome(page, lambda out: render.products(out, page)), as_json)


def buy(
    ctx: typer.Context,
    user: int = typer.Option(..., "--user", min=1, max=MAX_ID, help="The buyer's user id."),
    product: int = typer.Option(..., "--product", min=1, max=MAX_ID, help="The product id."),
    quantity: int = typer.Option(1, "--quantity", min=1, max=MAX_QUANTITY,
                                 help="How many, 1 to 1000."),
    write: WriteStrategy | None = typer.Option(
        None, "--write", help="How stock and credit are taken [default: purchase.strategy, "
                              "direct-call]."),
    wait: bool = typer.Option(False, "--wait", help="saga: wait for the outcome."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.1, max=60, metavar="S",
        help="How long --wait waits, 0.1 to 60 s [default 10]."),
    trace: bool = typer.Option(False, "--trace",
                               help="Follow the write to the read model and show its trace."),
    view: str = view_option("With --trace: a call tree, a timeline, or both."),
    as_json: bool = json_option(),
) -> None:
    """Purchase a product for a user: confirmed (exit 0), rejected with the reason (1), or
    a saga's still pending (3).

    \b
    Example: msshop buy --user 42 --product 7 --trace
    """
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    check_view(view)
    with flags():
        config = settings(ctx, **{"purchase.strategy": write})
        strategy = WriteStrategy(config.purchase_strategy)
        if wait and not strategy.saga:
            raise UsageError(f"--wait waits for a saga's outcome; a {strategy} purchase "
                             "answers it at once: leave out --wait, or use --write saga")
        if timeout is not None and not wait:
            raise UsageError("--timeout says how long --wait waits: add --wait "
                             "(with --write saga)")
        if trace and strategy is WriteStrategy.MONOLITH:
            raise UsageError("--trace follows a purchase through the services; the "
                             "monolith's is one transaction in the CLI: leave out --trace, "
                             "or use --write direct-call")
    waited = (timeout or WAIT) if wait else 0.0
    state = lifecycle.running_state(config)
    if not trace:
        from msshop.instruments import purchase

        bought = purchase.buy(state, strategy, user, product, quantity, wait=waited)
        emit(Outcome(purchase_document(bought), lambda out: draw_bought(out, bought),
                     exit_code=bought.exit_code, complaint=bought.reason), as_json)
        return
    from msshop.instruments import journey

    followed = journey.buy(state, user, product, quantity, strategy,
                           wait=waited or journey.APPLIED_WAIT)
    bought = followed.bought

    def draw(out: render.Console) -> None:
        draw_bought(out, bought)
        render.journey(out, followed.journey, view)

    document = purchase_document(bought)
    document["journey"] = render.journey_document(followed.journey)
    emit(Outcome(document, draw, exit_code=bought.exit_code, complaint=bought.reason),
         as_json)


def sagas(ctx: typer.Context, as_json: bool = json_option()) -> None:
    """List the sagas not finished: each pending order, the step it has reached, whose move
    it is, and how long it has waited.

    \b
    Example: msshop sagas
    """
    from msshop import render
    from msshop.instruments import sagas as unfinished_sagas
    from msshop.instruments.asking import databases
    from msshop.runtime.orchestrator import lifecycle

    report = unfinished_sagas.unfinished(databases(lifecycle.running_state(settings(ctx))))
    emit(Outcome(report, lambda out: render.sagas(out, report)), as_json)


def purchase_document(bought: Bought) -> Purchase:
    from msshop.contracts.outcomes import Purchase

    document = Purchase(outcome=bought.outcome, strategy=str(bought.strategy),
                        order=bought.order, created=bought.created)
    if bought.reason is not None:
        document["reason"] = bought.reason
    return document


def draw_bought(out: Console, bought: Bought) -> None:
    from msshop import render

    if bought.order is None:
        render.rejected(out, bought.reason or "refused", str(bought.strategy))
    elif bought.strategy.saga:
        render.saga_order(out, bought.order, bought.created, str(bought.strategy))
    else:
        render.order(out, bought.order, bought.created)


def seed(
    ctx: typer.Context,
    users: int | None = typer.Option(None, "--users", help="How many users [default 200]."),
    products: int | None = typer.Option(None, "--products",
                                        help="How many products [default 60]."),
    orders: int | None = typer.Option(None, "--orders", help="How many orders [default 2000]."),
    seed_value: int | None = typer.Option(None, "--seed", help="Random seed [default 42]."),
    reset: bool = typer.Option(False, "--reset", help="Delete all data first."),
    wait: bool = typer.Option(False, "--wait",
                              help="Then wait until the read model has every event."),
    timeout: float | None = typer.Option(
        None, "--timeout", metavar="S",
        help="How long --wait waits, 0 to 3600 s [default 600]; then exit 3."),
    as_json: bool = json_option("Print the report as JSON; progress goes to stderr."),
) -> None:
    """Fill the shop with realistic data; say if replication lags.

    \b
    Example: msshop seed --orders 100000 --wait
    """
    from msshop import render
    from msshop.instruments import seed as seeding
    from msshop.runtime.orchestrator import lifecycle

    with flags():
        config = settings(ctx, **{"seed.users": users, "seed.products": products,
                                  "seed.orders": orders, "seed.seed": seed_value})
        plan = seeding.SeedPlan(config.seed_users, config.seed_products, config.seed_orders,
                                config.seed_seed)
        wait_for = seeding.wait_timeout(wait, timeout)
    progress_to = render.terminal(stderr=as_json)  # the JSON alone on stdout
    if reset:
        lifecycle.command(config, "reset")
        render.reset_note(progress_to)
    shop = client(ctx)
    with render.seed_progress(progress_to) as progress:
        report = seeding.seed(shop, plan, progress)
        if wait_for is not None:
            report["replication"] = seeding.wait_replicated(shop, wait_for, progress)
    failed = wait and report["replication"]["state"] != "caught-up"
    emit(Outcome(report, lambda out: render.seed_report(out, report, waited=wait),
                 exit_code=seeding.exit_code(report, waited=wait),
                 complaint=render.seed_wait_failed(report["replication"]) if failed else None),
         as_json)
