"""`msshop experiment`: a workload under a nemesis, then a check and a verdict, in the
manner of Jepsen's Maelstrom, for the two strategies of this lesson.

1. a sandbox (a throw-away one in a temporary directory, or a running one with
   --sandbox), a few users and products of the run's own;
2. the workload for the scenario's seconds while the nemesis applies each fault at its
   start and heals it at its end (every fault is healed, however the run ends);
3. recovery: wait (bounded) until the outboxes are empty and the read model has applied
   the bus's head, and until every probe purchase shows in its user's replicated answer;
4. the checker's verdict, and the per-second figures the charts draw.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from msshop.contracts.config import Settings
from msshop.contracts.errors import MsshopError
from msshop.contracts.progress import Progress, Tally
from msshop.instruments.asking import Questioner
from msshop.instruments.checking import caught_up
from msshop.instruments.client import ShopClient
from msshop.instruments.experiments import checker, writes
from msshop.instruments.experiments.nemesis import Nemesis
from msshop.instruments.experiments.report import (
    STRATEGIES,
    Distribution,
    ExperimentReport,
    Outcome,
    Reads,
    Second,
    StrategyFigures,
    Window,
    WritesReport,
)
from msshop.instruments.experiments.scenario import Fault, Scenario, load
from msshop.instruments.experiments.workload import Read, Recorded, Workload
from msshop.runtime.orchestrator import lifecycle
from msshop.runtime.orchestrator.state import State

USERS = 10  # the run's own users: purchases go round them, reads pick at random
PRODUCTS = 20
RECOVERY = 30.0  # seconds the read model has to catch up after the last heal
Say = Callable[[str], None]
TALLY_AFTER = 0.5  # seconds after a second's end its tallies are taken (its answers in)


def scenario(name: str, seconds: float | None = None, rate: float | None = None
             ) -> Scenario:
    """The scenario `name` (or a .toml file), squeezed to `seconds` at `rate` reads/s."""
    return load(name).squeezed(seconds, rate)


def run(settings: Settings, scenario: Scenario, sandbox: Path | None = None,
        say: Say | None = None, progress: Progress | None = None
        ) -> ExperimentReport | WritesReport:
    """Run `scenario`, saying what happens to `say`; with `progress`, also each line said
    and each second's tallies, as the load goes (--progress FILE: the dashboard's)."""
    def tell(message: str) -> None:
        if say is not None:
            say(message)
        if progress is not None:
            progress({"said": message})

    if sandbox is not None:
        config = dataclasses.replace(settings, sandbox_dir=sandbox)
        lifecycle.running_state(config)  # one line if nothing runs there
        return _run_in(config, scenario, tell, progress)
    root = Path(tempfile.mkdtemp(prefix=f"msshop-experiment-{scenario.name}-"))
    config = dataclasses.replace(settings, sandbox_dir=root / "sandbox", base_port=0)
    try:
        tell(f"starting a sandbox of its own, on the {settings.bus_backend} bus")
        lifecycle.up_detached(config)
        try:
            return _run_in(config, scenario, tell, progress)
        finally:
            lifecycle.down(config)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_in(config: Settings, scenario: Scenario, tell: Say, progress: Progress | None
            ) -> ExperimentReport | WritesReport:
    nemesis = Nemesis(config)
    for fault in scenario.faults:
        nemesis.check(fault)
    state = lifecycle.running_state(config)
    client = ShopClient(state, timeout=30)
    if scenario.workload == "purchases":
        return writes.run_in(state, nemesis, scenario, client, tell, progress)
    tag = f"x{int(time.time() * 1000):x}"
    users, products = _cast(client, tag)
    caught_up(client, timeout=RECOVERY)
    workload = Workload({name: state.services[name].url for name in ("query", "orders")},
                        users, products, scenario.read_rate, scenario.purchase_rate, tag,
                        _head_of(ShopClient(state, timeout=0.5)))
    announce(scenario, tell, f"{scenario.read_rate:g} reads/s by each strategy, "
                              f"{scenario.purchase_rate:g} purchases/s")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    windows, unknown, recovered_in_s = asyncio.run(
        drive(workload, nemesis, scenario, client, tell, progress=progress))
    tell("checking every confirmed purchase, then verify")
    outcome = checker.check(Questioner(state), workload.recorded.purchases, recovered_in_s,
                            unknown)
    return _report(scenario, state, started_at, windows, workload.recorded, outcome)


def announce(scenario: Scenario, tell: Say, load: str) -> None:
    """What is about to run: its length and load, and each fault planned."""
    tell(f"{scenario.name}: {scenario.seconds:g} s, {load}")
    for fault in scenario.faults:
        tell(f"planned: {fault.label} from {fault.start:.1f} s to {fault.end:.1f} s")


def _head_of(client: ShopClient) -> Callable[[], int | None]:
    """The bus's head, asked of the bus (a client of the sampler's own: it runs in a
    thread); None while the bus does not answer."""
    def head() -> int | None:
        try:
            return client.bus_head()
        except MsshopError:
            return None

    return head


def _cast(client: ShopClient, tag: str) -> tuple[list[int], list[int]]:
    """The run's own users and products (new each run: answers stay small)."""
    users = client.add_batch("users", [{"email": f"{tag}-{n}@experiment.example",
                                        "name": f"Experiment {n}", "credit": 100_000_000.0}
                                       for n in range(USERS)])
    products = client.add_batch("products", [
        {"title": f"Experiment item {n}", "price": 1.5 + n, "stock": 1_000_000,
         "sku": f"{tag}-{n}"} for n in range(PRODUCTS)])
    return users["ids"], products["ids"]


class Load(Protocol):
    """What the schedule drives: the reads workload, or the purchases one (purchases.py)."""

    def now(self) -> float: ...

    async def run(self, seconds: float) -> None: ...

    async def settle(self, timeout: float) -> None: ...

    def tally(self, second: int) -> dict[str, Tally]: ...


async def drive(workload: Load, nemesis: Nemesis, scenario: Scenario,
                client: ShopClient, tell: Say, settle: float = 2.0,
                progress: Progress | None = None
                ) -> tuple[list[Window], list[str], float | None]:
    """The load, the faults on schedule, then recovery; (the windows, why the run cannot
    be judged if anything kept it from being, seconds from the end of the load and the
    faults until the read model had caught up)."""
    load = asyncio.create_task(workload.run(scenario.seconds))
    ticking = (asyncio.create_task(_tick(workload, scenario.seconds, progress))
               if progress is not None else None)
    began: dict[Fault, float] = {}
    windows: list[Window] = []
    unknown: list[str] = []
    await asyncio.sleep(0)  # the workload's clock starts
    try:
        await _schedule(workload, nemesis, scenario, began, windows, unknown, tell)
        await load  # the schedule may end before the load does
        if ticking is not None:
            await ticking  # the last second's tallies, TALLY_AFTER its end
    except BaseException:
        load.cancel()
        if ticking is not None:
            ticking.cancel()
        await workload.settle(0.0)
        raise
    finally:
        for fault, start in began.items():  # a run cut short heals what it broke
            await _step(nemesis.heal, fault, "heal", unknown)
            windows.append(_window(fault, start, workload.now(),
                                   nemesis.what_it_hit(fault)))
    ended = workload.now()
    recovered_in_s: float | None = None
    try:
        await asyncio.to_thread(caught_up, client, RECOVERY)
        recovered_in_s = workload.now() - ended
        await workload.settle(settle)  # caught up: each probe sees it at its next poll
    except MsshopError as exc:
        unknown.append(f"no recovery: {exc.message}")
        await workload.settle(0.0)
    # a probe still unseen once the read model has caught up is a purchase it lost: the
    # checker finds it missing and says so (invalid), which is not "unknown"
    tell(f"{workload.now():5.1f} s  recovered" if recovered_in_s is not None
         else f"{workload.now():5.1f} s  not recovered")
    return windows, unknown, recovered_in_s


async def _tick(workload: Load, seconds: float, progress: Progress) -> None:
    """Each second's tallies, TALLY_AFTER its end, until the load ends."""
    for second in range(int(-(-seconds // 1))):
        await asyncio.sleep(max(0.0, second + 1 + TALLY_AFTER - workload.now()))
        progress({"second": second, "strategies": workload.tally(second)})


async def _schedule(workload: Load, nemesis: Nemesis, scenario: Scenario,
                    began: dict[Fault, float], windows: list[Window], unknown: list[str],
                    tell: Say) -> None:
    """Each fault applied at its start and healed at its end, on the workload's clock."""
    schedule = sorted([(f.start, True, f) for f in scenario.faults]
                      + [(f.end, False, f) for f in scenario.faults], key=lambda e: e[0])
    for at, applying, fault in schedule:
        await asyncio.sleep(max(0.0, at - workload.now()))
        if applying:  # the window opens as the nemesis acts: a clean stop takes a while
            start = workload.now()
            if await _step(nemesis.apply, fault, "apply", unknown):
                began[fault] = start
                tell(f"{start:5.1f} s  {fault.label}")
        elif fault in began:
            healed = await _step(nemesis.heal, fault, "heal", unknown)
            windows.append(_window(fault, began.pop(fault), workload.now(),
                                   nemesis.what_it_hit(fault)))
            if healed:
                tell(f"{workload.now():5.1f} s  {fault.target} healed")


async def _step(act: Callable[[Fault], None], fault: Fault, doing: str,
                unknown: list[str]) -> bool:
    try:
        await asyncio.to_thread(act, fault)
    except MsshopError as exc:
        unknown.append(f"could not {doing} {fault.label}: {exc.message}")
        return False
    return True


def _window(fault: Fault, start: float, end: float, detail: str | None) -> Window:
    window: Window = {"kind": fault.kind, "target": fault.target, "label": fault.label,
                      "start": round(start, 3), "end": round(end, 3)}
    if detail is not None:
        window["detail"] = detail
    return window


# --- the figures -----------------------------------------------------------------------------


def _report(scenario: Scenario, state: State, started_at: str, windows: list[Window],
            recorded: Recorded, outcome: Outcome) -> ExperimentReport:
    staleness = [ms for p in recorded.probes if (ms := p.staleness_ms) is not None]

    def faulty(t: float) -> bool:
        return any(w["start"] <= t < w["end"] for w in windows)

    reads = [r for r in recorded.reads if r.t < scenario.seconds]
    return {
        "workload": "reads",
        "scenario": scenario.name, "title": scenario.title, "shows": scenario.shows,
        "bus": state.bus.backend, "started_at": started_at,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "seconds": scenario.seconds, "read_rate": scenario.read_rate,
        "purchase_rate": scenario.purchase_rate, "faults": windows,
        "timeline": _timeline(scenario.seconds, reads, recorded),
        "during_faults": {s: _figures([r for r in reads if r.strategy == s and faulty(r.t)])
                          for s in STRATEGIES},
        "outside_faults": {s: _figures([r for r in reads
                                        if r.strategy == s and not faulty(r.t)])
                           for s in STRATEGIES},
        "staleness_ms": [round(ms, 3) for ms in staleness],
        "staleness": _distribution(staleness), "outcome": outcome}


def _timeline(seconds: float, reads: list[Read], recorded: Recorded) -> list[Second]:
    timeline: list[Second] = []
    for t in range(int(-(-seconds // 1))):
        def within(at: float, t: int = t) -> bool:
            return t <= at < t + 1

        mine = [r for r in reads if within(r.t)]
        bought = [p for p in recorded.purchases if within(p.t)]
        samples = [s for s in recorded.samples if within(s.t)]
        stale = [ms for p in recorded.probes
                 if within(p.t) and (ms := p.staleness_ms) is not None]
        timeline.append({
            "t": t,
            "reads": {s: _reads([r for r in mine if r.strategy == s]) for s in STRATEGIES},
            "purchases_confirmed": sum(p.ok for p in bought),
            "purchases_refused": sum(not p.ok for p in bought),
            "outbox_backlog": samples[-1].backlog if samples else None,
            "consumer_behind": samples[-1].behind if samples else None,
            "staleness_p50_ms": round(statistics.median(stale), 3) if stale else None,
            "staleness_max_ms": round(max(stale), 3) if stale else None})
    return timeline


def _reads(reads: list[Read]) -> Reads:
    answered = sorted(r.ms for r in reads if r.ok)
    return {"answered": len(answered), "refused": len(reads) - len(answered),
            "p50_ms": _percentile(answered, 0.5), "p99_ms": _percentile(answered, 0.99)}


def _figures(reads: list[Read]) -> StrategyFigures:
    answered = sorted(r.ms for r in reads if r.ok)
    return {"reads": len(reads),
            "availability": round(len(answered) / len(reads), 4) if reads else None,
            "p50_ms": _percentile(answered, 0.5), "p99_ms": _percentile(answered, 0.99)}


def _distribution(values: list[float]) -> Distribution:
    ordered = sorted(values)
    return {"count": len(ordered), "p50": _percentile(ordered, 0.5),
            "p99": _percentile(ordered, 0.99),
            "max": round(ordered[-1], 3) if ordered else None}


def _percentile(ordered: list[float], share: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 3)
