"""The `msshop` command. Each command parses, calls one library function, renders.

Imports are local to the commands: a command that talks to a running sandbox must not pay
for importing the server stack.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from msshop.contracts.config import Settings, load
from msshop.contracts.errors import MsshopError, UsageError
from msshop.contracts.limits import MAX_ID, MAX_QUANTITY

if TYPE_CHECKING:
    from msshop.instruments.asking import Questioner
    from msshop.instruments.client import ShopClient
    from msshop.render import Console

app = typer.Typer(
    name="msshop",
    help="A shop split into microservices, to see, measure and teach how they share data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

SERVICE_HELP = "bus, users, products, orders or query (a nats cluster: also bus-2, bus-3)"


def json_option(what: str = "Print the result as JSON (docs/cli.md shows its shape).") -> Any:
    return typer.Option(False, "--json", help=what)


@app.callback()
def main_options(
    ctx: typer.Context,
    sandbox: Path | None = typer.Option(
        None, "--sandbox", metavar="DIR",
        help="Where the sandbox lives [env MSSHOP_SANDBOX; default ./sandbox]."),
    base_port: int | None = typer.Option(
        None, "--base-port", metavar="N",
        help="First port; 0 picks free ports [env MSSHOP_BASE_PORT; default 7100]."),
    config: Path | None = typer.Option(
        None, "--config", metavar="FILE", help="A settings file [env MSSHOP_CONFIG]."),
) -> None:
    ctx.obj = {"sandbox.dir": sandbox, "sandbox.base_port": base_port, "config": config}


def settings(ctx: typer.Context, **overrides: Any) -> Settings:
    """Defaults <- config file <- environment <- the global flags <- this command's flags."""
    options: dict[str, Any] = dict(ctx.find_root().obj or {})
    config = options.pop("config", None)
    return load(config_file=config, overrides={**options, **overrides})


def out() -> Console:
    from msshop import render

    return render.terminal()


# --- the sandbox -----------------------------------------------------------------------------


@app.command()
def up(
    ctx: typer.Context,
    detach: bool = typer.Option(False, "--detach", "-d",
                                help="Return once all services are healthy."),
    bus: str | None = typer.Option(
        None, "--bus", metavar="log|nats",
        help="What carries the events: msshop's own log, or NATS JetStream "
             "[env MSSHOP_BUS_BACKEND; default log]."),
    bus_nodes: int | None = typer.Option(
        None, "--bus-nodes", metavar="N",
        help="nats: how many clustered nats-servers to start, 1, 3 or 5 "
             "[env MSSHOP_BUS_NODES; default 1]."),
    wait_for: str | None = typer.Option(
        None, "--wait", metavar="healthy|caught-up",
        help="With --detach: then wait until this holds: healthy (what --detach does "
             "anyway) or caught-up (replication done, up to 60 s)."),
    as_json: bool = json_option("With --detach: print where everything runs as JSON."),
) -> None:
    """Start the services.

    \b
    Example: msshop up --detach --bus nats
    """
    from msshop import render
    from msshop.instruments import waiting
    from msshop.runtime.orchestrator import lifecycle

    if wait_for is not None:  # before anything starts: the first mistake first
        waiting.check_up_wait(wait_for, detach)
    if as_json and not detach:
        raise UsageError("--json goes with --detach (in the foreground, up shows a live "
                         "table until Ctrl-C)")
    config = settings(ctx, **{"bus.backend": bus, "bus.nodes": bus_nodes})
    console = render.terminal()
    started = time.perf_counter()
    if detach:
        state, notes = lifecycle.up_detached(config)
        took = time.perf_counter() - started
        if not as_json:
            render.up_detached(console, state, took, notes)
        report = None
        if wait_for is not None:
            report = waiting.wait(config, [], wait_for, waiting.UP_TIMEOUT)
        if as_json:
            render.document(render.sandbox_up(state, took, notes, report))
        elif report is not None:
            render.waited(console, report)
        if report is not None:
            from msshop.contracts.waiting import EXIT_CODES

            raise typer.Exit(EXIT_CODES[report["outcome"]])
        return
    printer = render.LivePrinter(console)
    lifecycle.up_foreground(
        config, printer,
        on_ready=lambda state: render.ready(console, state, time.perf_counter() - started))
    render.foreground_stopped(console)


@app.command()
def down(ctx: typer.Context, as_json: bool = json_option()) -> None:
    """Stop every service and the supervisor.

    \b
    Example: msshop down
    """
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    state = lifecycle.down(settings(ctx))
    if as_json:
        render.document(render.sandbox_down(state))
    else:
        render.stopped(out(), state)


@app.command()
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Show each service's pid, port, health, rows and database.

    \b
    Example: msshop status
    """
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    config = settings(ctx)
    if as_json:
        try:
            report = lifecycle.status(config)
        except MsshopError as exc:
            render.status_unknown_json(str(config.sandbox_dir), exc.message)
            raise typer.Exit(exc.exit_code) from None
        render.status_json(report)
        return
    render.status(out(), lifecycle.status(config))


@app.command()
def inspect(
    ctx: typer.Context,
    service: str | None = typer.Argument(
        None, metavar="[SERVICE]",
        help="bus, users, products, orders or query [default: every one]"),
    table: str | None = typer.Option(None, "--table", metavar="T",
                                     help="Show the first rows of this table of SERVICE."),
    limit: int | None = typer.Option(None, "--limit", metavar="N",
                                     help="With --table: how many rows, 1 to 1000 "
                                          "[default 10]."),
    as_json: bool = typer.Option(False, "--json", help="Print it as JSON."),
) -> None:
    """Look into each service's own database, read-only.

    Tables, rows, bytes, schemas, and what replication costs in space. The operator looking,
    not a service (no service opens another's file); works whether or not the sandbox runs.

    \b
    Example: msshop inspect orders --table orders --limit 3
    """
    from msshop import render
    from msshop.contracts.inspection import DEFAULT_ROW_LIMIT
    from msshop.instruments import inspection

    if table is None:
        if limit is not None:
            raise UsageError("--limit N goes with --table T")
        found = inspection.inspect(settings(ctx), service)
        if as_json:
            render.inspection_json(found)
        else:
            render.inspected(out(), found)
        return
    rows = inspection.table_rows(settings(ctx), service, table,
                                 DEFAULT_ROW_LIMIT if limit is None else limit)
    if as_json:
        render.inspected_rows_json(rows)
    else:
        render.inspected_rows(out(), rows)


@app.command()
def logs(
    ctx: typer.Context,
    service: str | None = typer.Argument(None, help=f"{SERVICE_HELP} or supervisor"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int | None = typer.Option(
        None, "--lines", "-n",
        help="How many recent lines; 0 = all [default 40; with --since all]."),
    since: str | None = typer.Option(
        None, "--since", metavar="DURATION|HH:MM[:SS]",
        help="Only lines since then: 30s, 5m, 2h ago, or a clock time today."),
    grep: str | None = typer.Option(None, "--grep", metavar="REGEX",
                                    help="Only lines this regular expression matches."),
    no_prefix: bool = typer.Option(False, "--no-prefix",
                                   help="Each line as written, without the service column."),
    as_json: bool = typer.Option(
        False, "--json",
        help='One JSON object per line: {"service", "time", "level", "message", "line"}.'),
) -> None:
    """Print the services' logs, merged by time.

    \b
    Example: msshop logs orders --follow
    """
    from msshop import render
    from msshop.runtime.orchestrator import logview

    shown = logview.view(settings(ctx), service, lines, follow, since, grep)
    console = out()
    width = None if no_prefix else max(len(name) for name in shown.names)
    try:
        for entry in shown.lines:
            if as_json:
                render.log_entry_json(entry)
            else:
                render.log_entry(console, entry, width)
    except KeyboardInterrupt:  # Ctrl-C ends --follow; it is how one stops it
        return


@app.command()
def wait(
    ctx: typer.Context,
    services: list[str] | None = typer.Argument(
        None, metavar="[SERVICE]...", help=f"{SERVICE_HELP} [default: every one]"),
    condition: str = typer.Option(
        "healthy", "--for", metavar="healthy|caught-up|down",
        help="Running and healthy; replication done (outboxes empty, the read model at "
             "the bus's head); or stopped (no service named: no sandbox running)."),
    timeout: float = typer.Option(60.0, "--timeout", metavar="S",
                                  help="Give up after S seconds, 0 to 3600."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Wait until services are healthy, caught up or down.

    Exit 0 when it holds; 1 no sandbox, or a service crashed; 2 bad usage; 3 timed out.

    \b
    Example: msshop wait --for caught-up
    """
    from msshop import render
    from msshop.contracts.waiting import EXIT_CODES
    from msshop.instruments import waiting

    report = waiting.wait(settings(ctx), services or [], condition, timeout)
    if as_json:
        render.waited_json(report)
    else:
        render.waited(out(), report)
    raise typer.Exit(EXIT_CODES[report["outcome"]])


@app.command()
def stop(ctx: typer.Context, service: str = typer.Argument(..., help=SERVICE_HELP),
         as_json: bool = json_option()) -> None:
    """Stop one service (the others keep running).

    \b
    Example: msshop stop products
    """
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    lifecycle.command(settings(ctx), "stop", service)
    if as_json:
        render.document(render.service_changed(service, "stopped", "stopped"))
    else:
        render.service_stopped(out(), service)


@app.command()
def start(ctx: typer.Context, service: str = typer.Argument(..., help=SERVICE_HELP),
          as_json: bool = json_option()) -> None:
    """Start a stopped or crashed service.

    \b
    Example: msshop start products
    """
    _start(ctx, service, as_json, restart=False)


@app.command()
def restart(ctx: typer.Context, service: str = typer.Argument(..., help=SERVICE_HELP),
            as_json: bool = json_option()) -> None:
    """Stop and start one service.

    \b
    Example: msshop restart orders
    """
    _start(ctx, service, as_json, restart=True)


def _start(ctx: typer.Context, service: str, as_json: bool, restart: bool) -> None:
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    ready_ms, health = lifecycle.start(settings(ctx), service, restart=restart)
    if as_json:
        render.document(render.service_changed(
            service, "restarted" if restart else "started", "running", ready_ms=ready_ms,
            health=health))
    else:
        render.service_started(out(), service, ready_ms, health, restarted=restart)


@app.command()
def kill(ctx: typer.Context, service: str = typer.Argument(..., help=SERVICE_HELP),
         as_json: bool = json_option()) -> None:
    """SIGKILL one service, as a crash would.

    \b
    Example: msshop kill products
    """
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    state = lifecycle.kill(settings(ctx), service)
    if as_json:
        ended = state.services[service]
        render.document(render.service_changed(service, "killed", ended.status,
                                               exit=ended.exit))
    else:
        render.service_killed(out(), service, state)


@app.command()
def chaos(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="bus, users, products, orders or query"),
    to: str | None = typer.Option(
        None, "--to", metavar="CALLEE",
        help="Act on this service's calls to CALLEE only (a link), not on what it answers."),
    latency: float = typer.Option(0, "--latency", metavar="MS",
                                  help="Delay every request (--to: call) by this many ms, "
                                       "0..60000."),
    jitter: float = typer.Option(0, "--jitter", metavar="MS",
                                 help="Add a random 0..MS ms on top."),
    error_rate: float = typer.Option(0, "--error-rate", metavar="P",
                                     help="Answer 503 to this share of requests (0..1); "
                                          "--to: fail that share of calls (1: a partition)."),
    duplicate_rate: float = typer.Option(
        0, "--duplicate-rate", metavar="P",
        help="With --to bus: hand this share of the events read over again, later and out "
             "of order (0..1)."),
    clear: bool = typer.Option(False, "--clear",
                               help="Remove every fault (with --to: that link's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
) -> None:
    """Make a service slow or failing, or only its calls to another.

    \b
    Example: msshop chaos products --latency 300
    """
    from msshop import render
    from msshop.instruments import chaos as faults

    answer = faults.inject(settings(ctx), service, latency, jitter, error_rate, clear, to,
                           duplicate_rate)
    render.chaos(out(), service, answer, to, as_json)


@app.command()
def trespass(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="users, products, orders or query"),
    into: str = typer.Option(..., "--into", metavar="SERVICE",
                             help="The service whose database file it tries to open."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
) -> None:
    """Make a service open another's database, and see it refused.

    \b
    Example: msshop trespass users --into orders
    """
    from msshop import render
    from msshop.instruments import chaos as faults

    answer = faults.trespass(settings(ctx), service, into)
    if as_json:
        render.trespassed_json(answer)
    else:
        render.trespassed(out(), answer)


@app.command()
def poison(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print its position as JSON."),
) -> None:
    """Put an event no read model can apply on the bus.

    \b
    Example: msshop poison
    """
    from msshop import render
    from msshop.instruments import chaos as faults

    position = faults.poison(settings(ctx))
    if as_json:
        render.poisoned_json(position)
    else:
        render.poisoned(out(), position)


# --- the shop --------------------------------------------------------------------------------


def _client(ctx: typer.Context) -> ShopClient:
    from msshop.instruments.client import ShopClient
    from msshop.runtime.orchestrator import lifecycle

    return ShopClient(lifecycle.running_state(settings(ctx)))


@app.command()
def signup(
    ctx: typer.Context,
    email: str = typer.Option(..., "--email", help="Unique email address."),
    name: str = typer.Option(..., "--name", help="The person's name."),
    trace: bool = typer.Option(False, "--trace",
                               help="Follow the write to the read model and show its trace."),
    view: str = typer.Option("both", "--view", metavar="both|tree|timeline",
                             help="With --trace: a call tree, a timeline, or both."),
    as_json: bool = json_option(),
) -> None:
    """Sign a user up.

    \b
    Example: msshop signup --email ada@example.com --name 'Ada L'
    """
    from msshop import render

    check_view(view)
    if not trace:
        user = _client(ctx).signup(email, name)
        if as_json:
            render.document({"user": user})
        else:
            render.user(out(), user)
        return
    from msshop.instruments import journey
    from msshop.runtime.orchestrator import lifecycle

    signed = journey.signup(lifecycle.running_state(settings(ctx)), email, name)
    if as_json:
        render.document({"user": signed.user, "journey": render.followed(signed.journey)})
        return
    render.user(out(), signed.user)
    render.journey(out(), signed.journey, view)


@app.command()
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

    page = _client(ctx).products(limit, after)
    if as_json:
        render.document(page)
    else:
        render.products(out(), page)


@app.command()
def buy(
    ctx: typer.Context,
    user: int = typer.Option(..., "--user", min=1, max=MAX_ID, help="The buyer's user id."),
    product: int = typer.Option(..., "--product", min=1, max=MAX_ID, help="The product id."),
    quantity: int = typer.Option(1, "--quantity", min=1, max=MAX_QUANTITY,
                                 help="How many, 1 to 1000."),
    trace: bool = typer.Option(False, "--trace",
                               help="Follow the write to the read model and show its trace."),
    view: str = typer.Option("both", "--view", metavar="both|tree|timeline",
                             help="With --trace: a call tree, a timeline, or both."),
    as_json: bool = json_option(),
) -> None:
    """Purchase a product for a user.

    \b
    Example: msshop buy --user 42 --product 7 --trace
    """
    from msshop import render

    check_view(view)
    if not trace:
        order, created = _client(ctx).buy(user, product, quantity, wait_published_ms=1000)
        if as_json:
            render.document({"order": order, "created": created})
        else:
            render.order(out(), order, created)
        return
    from msshop.instruments import journey
    from msshop.runtime.orchestrator import lifecycle

    bought = journey.buy(lifecycle.running_state(settings(ctx)), user, product, quantity)
    if as_json:
        render.document({"order": bought.order, "created": bought.created,
                         "journey": render.followed(bought.journey)})
        return
    render.order(out(), bought.order, bought.created)
    render.journey(out(), bought.journey, view)


@app.command()
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
    as_json: bool = typer.Option(False, "--json",
                                 help="Print the report as JSON; progress goes to stderr."),
) -> None:
    """Fill the shop with realistic data; say if replication lags.

    \b
    Example: msshop seed --orders 100000 --wait
    """
    from msshop import render
    from msshop.instruments import seed as seeding
    from msshop.runtime.orchestrator import lifecycle

    config = settings(ctx, **{"seed.users": users, "seed.products": products,
                              "seed.orders": orders, "seed.seed": seed_value})
    plan = seeding.SeedPlan(config.seed_users, config.seed_products, config.seed_orders,
                            config.seed_seed)
    wait_for = seeding.wait_timeout(wait, timeout)
    console = render.terminal(stderr=True) if as_json else out()
    if reset:
        lifecycle.command(config, "reset")
        render.reset_done(console)
    client = _client(ctx)
    with render.seed_progress(console) as progress:
        report = seeding.seed(client, plan, progress)
        if wait_for is not None:
            report["replication"] = seeding.wait_replicated(client, wait_for, progress)
    if as_json:
        render.seed_json(report, waited=wait)
    else:
        render.seed_report(console, report, waited=wait)
    raise typer.Exit(seeding.exit_code(report, waited=wait))


# --- the question: which products did user U order? ------------------------------------------


def _questioner(ctx: typer.Context) -> Questioner:
    from msshop.instruments.asking import Questioner
    from msshop.runtime.orchestrator import lifecycle

    return Questioner(lifecycle.running_state(settings(ctx)))


@app.command()
def query(
    ctx: typer.Context,
    user: int = typer.Option(..., "--user", min=1, max=MAX_ID,
                             help="The user whose orders to list."),
    strategy: str = typer.Option("replicated", "--strategy",
                                 help="direct-call, replicated or monolith."),
    fanout: str = typer.Option("batched", "--fanout",
                               help="direct-call only: batched, or naive (one call per order)."),
    after: int = typer.Option(0, "--after", min=0, max=MAX_ID, metavar="POSITION",
                              help="replicated: first wait until this bus position is applied."),
    wait_ms: int = typer.Option(2000, "--wait-ms", min=0, max=30000,
                                help="How long --after may wait."),
    partial: bool = typer.Option(False, "--partial",
                                 help="direct-call: answer with what could be had."),
    as_json: bool = typer.Option(False, "--json", help="Answer, spans and freshness as JSON."),
    view: str = typer.Option("both", "--view", metavar="both|tree|timeline",
                             help="The trace as a call tree, a timeline, or both."),
) -> None:
    """Which products did a user order?

    \b
    Example: msshop query --user 42 --strategy replicated
    """
    from msshop import render

    check_view(view)
    asked = _questioner(ctx).ask(user, strategy, fanout, after, wait_ms, partial)
    if as_json:
        render.answer_json(asked)
    else:
        render.answer_with_trace(out(), asked, view)


@app.command()
def compare(
    ctx: typer.Context,
    user: int = typer.Option(..., "--user", min=1, max=MAX_ID,
                             help="The user whose orders to list."),
    as_json: bool = json_option(),
) -> None:
    """Every strategy side by side, against the monolith.

    \b
    Example: msshop compare --user 42
    """
    from msshop import render
    from msshop.instruments import checking

    rows = checking.compare(_questioner(ctx), user)
    if as_json:
        render.document(render.comparison(user, rows))
    else:
        render.compare(out(), user, rows)


@app.command()
def trace(
    ctx: typer.Context,
    trace_id: str = typer.Argument("last", help="A trace id, or 'last'."),
    export: str | None = typer.Option(None, "--export",
                                      help="otlp-json, perfetto, html or mermaid."),
    output: Path | None = typer.Option(None, "--output", "-o", metavar="FILE",
                                       help="With --export: write it to FILE."),
    view: str = typer.Option("both", "--view", metavar="both|tree|timeline",
                             help="The trace as a call tree, a timeline, or both."),
    as_json: bool = json_option("Print its id and spans as JSON."),
) -> None:
    """Show a stored trace again, or export it.

    \b
    Example: msshop trace last --export mermaid
    """
    from msshop import render
    from msshop.instruments.traces import export as exports
    from msshop.instruments.traces.store import TraceStore

    check_view(view)
    if output is not None and export is None:
        raise UsageError("--output FILE goes with --export FORMAT")
    if as_json and export is not None:
        raise UsageError("--json prints the spans as msshop keeps them; --export FORMAT "
                         "another format: choose one")
    if export is not None:
        exports.check_format(export)  # before looking for the trace: the first mistake first
    stored = TraceStore.of(settings(ctx).sandbox_dir).load(trace_id)
    if as_json:
        render.document({"trace_id": stored.trace_id, "spans": stored.spans})
    elif export is None:
        render.shown(out(), stored.spans, stored.trace_id, view)
    elif output is None:
        render.text_document(exports.exported(stored, export))
    else:
        size = exports.write(exports.exported(stored, export), output)
        render.note(out(), f"wrote {output} ({size:,} bytes, {export})")


@app.command()
def traces(
    ctx: typer.Context,
    user: int | None = typer.Option(None, "--user", min=1, max=MAX_ID,
                                    help="Only this user's."),
    strategy: str | None = typer.Option(None, "--strategy",
                                        help="Only this strategy's: direct-call, replicated "
                                             "or monolith."),
    failed: bool = typer.Option(False, "--failed", help="Only those where a span failed."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=200, help="How many."),
    as_json: bool = typer.Option(False, "--json", help="Print them as JSON."),
) -> None:
    """The stored traces, newest first.

    \b
    Example: msshop traces --strategy replicated
    """
    from msshop import render
    from msshop.instruments.traces.store import TraceStore, matching

    if strategy is not None and strategy not in ("direct-call", "replicated", "monolith"):
        raise UsageError(f"--strategy {strategy!r} is not one of: direct-call, replicated, "
                         "monolith")
    found = matching(TraceStore.of(settings(ctx).sandbox_dir).recent(), user, strategy,
                     failed, limit)
    if as_json:
        render.traces_json(found)
    else:
        render.trace_list(out(), found)


@app.command()
def verify(ctx: typer.Context, as_json: bool = json_option()) -> None:
    """Check the replicated read model against the monolith join.

    \b
    Example: msshop verify
    """
    from msshop import render
    from msshop.instruments import checking

    report = checking.verify(_questioner(ctx))
    if as_json:
        render.document(render.verification(report))
    else:
        render.verify(out(), report)
    if report.differences:
        raise typer.Exit(1)


@app.command()
def events(
    ctx: typer.Context,
    after: int = typer.Option(0, "--after", min=0, max=MAX_ID,
                              help="Start after this bus position."),
    limit: int = typer.Option(50, "--limit", min=1, max=10000,
                              help="How many events (without --follow)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    as_json: bool = json_option("One JSON object a line, each event whole (docs/cli.md)."),
) -> None:
    """Show the bus's event log.

    \b
    Example: msshop events --after 100 --limit 20
    """
    from msshop import render

    client = _client(ctx)  # first: with no sandbox, say so before importing the bus's client
    from msshop.instruments import event_pager  # asyncio and msgspec: ~25 ms

    console = out()
    for position, event in event_pager.read(client.bus(), after, limit, follow):
        if as_json:
            render.json_line(render.event_on_the_bus(position, event))
        else:
            render.event_line(console, position, event)


@app.command()
def replay(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="query: the service with a read model"),
    as_json: bool = json_option(),
) -> None:
    """Rebuild a read model from the whole bus log, then swap it in.

    \b
    Example: msshop replay query
    """
    from msshop import render
    from msshop.instruments.replay import replay as rebuild

    result = rebuild(settings(ctx), service)
    if as_json:
        render.document(result)
    else:
        render.replayed(out(), result)


@app.command()
def deadletters(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", min=1, max=10000, help="How many, newest first."),
    as_json: bool = json_option(),
) -> None:
    """Events the read model could not apply, and why.

    \b
    Example: msshop deadletters --limit 10
    """
    from msshop import render

    page = _client(ctx).dead_letters(limit)
    if as_json:
        render.document(page)
    else:
        render.dead_letters(out(), page)


@app.command()
def bench(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="Fewer requests and data: about 20 s."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    bus: str | None = typer.Option(
        None, "--bus", metavar="log|nats|log,nats",
        help="The bus backend(s) to measure; several: one after the other, side by side "
             "[default: bus.backend]."),
) -> None:
    """Measure every strategy in a throw-away sandbox.

    \b
    Example: msshop bench --quick
    """
    from msshop import render
    from msshop.instruments.bench import measure

    config = settings(ctx)
    backends = [settings(ctx, **{"bus.backend": b.strip()}).bus_backend
                for b in (bus or config.bus_backend).split(",")]
    console = render.terminal(stderr=as_json)
    reports = measure.run_each(config, backends, quick,
                               say=lambda message: render.bench_progress(console, message))
    if as_json:
        render.bench_json(reports[0] if len(reports) == 1 else reports)
    elif len(reports) == 1:
        render.bench_report(out(), reports[0])
    else:
        render.bench_side_by_side(out(), reports)


@app.command()
def experiment(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., metavar="NAME",
        help="products-outage, slow-users, bus-outage, bus-pause, partition, query-crash, "
             "duplicates, or a scenario .toml file."),
    seconds: float | None = typer.Option(
        None, "--seconds", metavar="N",
        help="Run the schedule squeezed or stretched to N seconds [default: the scenario's]."),
    rate: float | None = typer.Option(
        None, "--rate", metavar="R",
        help="Reads per second by each strategy; purchases in proportion [default: the "
             "scenario's]."),
    bus: str | None = typer.Option(None, "--bus", metavar="log|nats",
                                   help="The bus backend [default: bus.backend]."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    report_dir: Path | None = typer.Option(
        None, "--report", metavar="DIR",
        help="Also write DIR/index.html (the charts, offline) and DIR/report.json."),
    sandbox: Path | None = typer.Option(
        None, "--sandbox", metavar="DIR",
        help="Run in the sandbox running at DIR (left running) instead of a throw-away one."),
) -> None:
    """Run load and faults over time; chart, check, give a verdict.

    Charts each strategy's reads over time; exit 0 valid, 1 invalid, 2 unknown.

    \b
    Example: msshop experiment products-outage
    """
    from msshop import render
    from msshop.instruments.experiments import page, run
    from msshop.instruments.experiments.report import EXIT_CODES

    if sandbox is not None and bus is not None:
        raise UsageError("--bus: the sandbox at --sandbox runs on the bus it was started "
                         "with; leave out --bus")
    config = settings(ctx, **{"bus.backend": bus})
    scenario = run.scenario(name, seconds, rate)
    if report_dir is not None:
        page.make_room(report_dir)
    console = render.terminal(stderr=as_json)
    report = run.run(config, scenario, sandbox,
                     say=lambda message: render.experiment_progress(console, message))
    if report_dir is not None:
        render.report_written(console, page.write_report(report, report_dir))
    if as_json:
        render.experiment_json(report)
    else:
        render.experiment(out(), report)
    raise typer.Exit(EXIT_CODES[report["outcome"]["verdict"]])


@app.command()
def demo(
    ctx: typer.Context,
    name: str = typer.Argument(
        "lesson", help="lesson, outage, lag, replay, broker, isolation or tradeoffs."),
    no_pause: bool = typer.Option(False, "--no-pause",
                                  help="Run straight through, for recording and CI."),
    speed: float = typer.Option(1.0, "--speed", metavar="FACTOR",
                                help="With --no-pause: shorter (>1) or longer (<1) pauses."),
) -> None:
    """Run a scripted demo in a sandbox of its own.

    \b
    Example: msshop demo outage --no-pause
    """
    from msshop import render
    from msshop.instruments import demo as demos

    console = render.terminal()
    pause = not no_pause and sys.stdin.isatty()  # nobody to press Enter: run straight through
    steps = demos.run(name, pause, speed, render.DemoStage(console))
    render.demo_done(console, name, steps)


def check_view(view: str) -> None:
    if view not in ("both", "tree", "timeline"):
        raise UsageError(f"--view {view!r} is not one of: both, tree, timeline")


def fail(error: MsshopError) -> NoReturn:
    from msshop import render

    render.error(error.message)
    sys.exit(error.exit_code)


def main() -> None:
    try:
        app()
    except MsshopError as exc:
        fail(exc)
