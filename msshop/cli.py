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

    return render.console()


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
) -> None:
    """Start the services. Example: msshop up --detach --bus nats"""
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    config = settings(ctx, **{"bus.backend": bus, "bus.nodes": bus_nodes})
    console = render.console()
    started = time.perf_counter()
    if detach:
        state, notes = lifecycle.up_detached(config)
        render.up_detached(console, state, time.perf_counter() - started, notes)
        return
    printer = render.LivePrinter(console)
    lifecycle.up_foreground(
        config, printer,
        on_ready=lambda state: render.ready(console, state, time.perf_counter() - started))
    render.foreground_stopped(console)


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop every service and the supervisor. Example: msshop down"""
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    render.stopped(out(), lifecycle.down(settings(ctx)))


@app.command()
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Show each service's pid, port, health, rows and database. Example: msshop status"""
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
def logs(
    ctx: typer.Context,
    service: str | None = typer.Argument(None, help=f"{SERVICE_HELP} or supervisor"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(40, "--lines", "-n", help="How many recent lines; 0 = all."),
) -> None:
    """Print the services' logs. Example: msshop logs orders --follow"""
    from msshop import render
    from msshop.runtime.orchestrator import logview

    console = out()
    for name, line in logview.lines(settings(ctx), service, lines, follow):
        render.log_line(console, name, line)


@app.command()
def stop(ctx: typer.Context, service: str = typer.Argument(..., help=SERVICE_HELP)) -> None:
    """Stop one service (the others keep running). Example: msshop stop products"""
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    lifecycle.command(settings(ctx), "stop", service)
    render.service_stopped(out(), service)


@app.command()
def start(ctx: typer.Context, service: str = typer.Argument(..., help=SERVICE_HELP)) -> None:
    """Start a stopped or crashed service. Example: msshop start products"""
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    ready_ms, health = lifecycle.start(settings(ctx), service)
    render.service_started(out(), service, ready_ms, health)


@app.command()
def restart(ctx: typer.Context, service: str = typer.Argument(..., help=SERVICE_HELP)) -> None:
    """Stop and start one service. Example: msshop restart orders"""
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    ready_ms, health = lifecycle.start(settings(ctx), service, restart=True)
    render.service_started(out(), service, ready_ms, health, restarted=True)


@app.command()
def kill(ctx: typer.Context, service: str = typer.Argument(..., help=SERVICE_HELP)) -> None:
    """SIGKILL one service, as a crash would. Example: msshop kill products"""
    from msshop import render
    from msshop.runtime.orchestrator import lifecycle

    render.service_killed(out(), service, lifecycle.kill(settings(ctx), service))


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
    """Make a running service slow or failing, or only its calls to one other service.

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
    """Make a service try to open another's database, and see it refused.

    Example: msshop trespass users --into orders"""
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
    """Put an event no read model can apply on the bus. Example: msshop poison"""
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
) -> None:
    """Sign a user up. Example: msshop signup --email ada@example.com --name 'Ada L'"""
    from msshop import render

    if not trace:
        render.user(out(), _client(ctx).signup(email, name))
        return
    from msshop.instruments import journey
    from msshop.runtime.orchestrator import lifecycle

    check_view(view)
    signed = journey.signup(lifecycle.running_state(settings(ctx)), email, name)
    render.user(out(), signed.user)
    render.journey(out(), signed.journey, view)


@app.command()
def products(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="How many to list."),
    after: int = typer.Option(0, "--after", min=0, max=MAX_ID,
                              help="List products after this id."),
) -> None:
    """List products. Example: msshop products --limit 10"""
    from msshop import render

    render.products(out(), _client(ctx).products(limit, after))


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
) -> None:
    """Purchase a product for a user. Example: msshop buy --user 42 --product 7 --trace"""
    from msshop import render

    if not trace:
        order, created = _client(ctx).buy(user, product, quantity, wait_published_ms=1000)
        render.order(out(), order, created)
        return
    from msshop.instruments import journey
    from msshop.runtime.orchestrator import lifecycle

    check_view(view)
    bought = journey.buy(lifecycle.running_state(settings(ctx)), user, product, quantity)
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
) -> None:
    """Fill the shop with deterministic, realistic data. Example: msshop seed --orders 100000"""
    from msshop import render
    from msshop.instruments.seed import SeedPlan
    from msshop.instruments.seed import seed as run_seed
    from msshop.runtime.orchestrator import lifecycle

    config = settings(ctx, **{"seed.users": users, "seed.products": products,
                              "seed.orders": orders, "seed.seed": seed_value})
    plan = SeedPlan(config.seed_users, config.seed_products, config.seed_orders,
                    config.seed_seed)
    console = out()
    if reset:
        lifecycle.command(config, "reset")
        render.reset_done(console)
    client = _client(ctx)
    with render.seed_progress(console) as progress:
        report = run_seed(client, plan, progress)
    render.seed_report(console, report)


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
    """Which products did a user order? Example: msshop query --user 42 --strategy replicated"""
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
) -> None:
    """Every strategy side by side, against the monolith. Example: msshop compare --user 42"""
    from msshop import render
    from msshop.instruments import checking

    render.compare(out(), user, checking.compare(_questioner(ctx), user))


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
) -> None:
    """Show a stored trace again, or export it. Example: msshop trace last --export mermaid"""
    from msshop import render
    from msshop.instruments.traces import export as exports
    from msshop.instruments.traces.store import TraceStore

    check_view(view)
    if output is not None and export is None:
        raise UsageError("--output FILE goes with --export FORMAT")
    if export is not None:
        exports.check_format(export)  # before looking for the trace: the first mistake first
    stored = TraceStore.of(settings(ctx).sandbox_dir).load(trace_id)
    if export is None:
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
    """The stored traces, newest first. Example: msshop traces --strategy replicated"""
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
        render.traces(out(), found)


@app.command()
def verify(ctx: typer.Context) -> None:
    """Check the replicated read model against the monolith join. Example: msshop verify"""
    from msshop import render
    from msshop.instruments import checking

    report = checking.verify(_questioner(ctx))
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
) -> None:
    """Show the bus's event log. Example: msshop events --after 100 --limit 20"""
    from msshop import render

    client = _client(ctx)  # first: with no sandbox, say so before importing the bus's client
    from msshop.instruments import event_pager  # asyncio and msgspec: ~25 ms

    console = out()
    for position, event in event_pager.read(client.bus(), after, limit, follow):
        render.event_line(console, position, event)


@app.command()
def replay(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="query: the service with a read model"),
) -> None:
    """Rebuild a read model from the whole bus log, then swap it in. Example: msshop replay query"""
    from msshop import render
    from msshop.instruments.replay import replay as rebuild

    render.replayed(out(), rebuild(settings(ctx), service))


@app.command()
def deadletters(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", min=1, max=10000, help="How many, newest first."),
) -> None:
    """Events the read model could not apply, and why. Example: msshop deadletters --limit 10"""
    from msshop import render

    render.dead_letters(out(), _client(ctx).dead_letters(limit))


@app.command()
def bench(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="Fewer requests and data: ~15 s."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    bus: str | None = typer.Option(
        None, "--bus", metavar="log|nats|log,nats",
        help="The bus backend(s) to measure; several: one after the other, side by side "
             "[default: bus.backend]."),
) -> None:
    """Measure every strategy in a throw-away sandbox. Example: msshop bench --quick"""
    from msshop import render
    from msshop.instruments.bench import measure

    config = settings(ctx)
    backends = [settings(ctx, **{"bus.backend": b.strip()}).bus_backend
                for b in (bus or config.bus_backend).split(",")]
    console = render.console(stderr=as_json)
    reports = measure.run_each(config, backends, quick,
                               say=lambda message: render.bench_progress(console, message))
    if as_json:
        render.bench_json(reports[0] if len(reports) == 1 else reports)
    elif len(reports) == 1:
        render.bench(out(), reports[0])
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
    """Run load and faults over time; chart each strategy; check; give a verdict (exit 0
    valid, 1 invalid, 2 unknown). Example: msshop experiment products-outage"""
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
    console = render.console(stderr=as_json)
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
    """Run a scripted demo in a sandbox of its own. Example: msshop demo outage --no-pause"""
    from msshop import render
    from msshop.instruments import demo as demos

    console = render.console()
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
