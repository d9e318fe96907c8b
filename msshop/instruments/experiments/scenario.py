"""Experiments as data: configs/experiments/*.toml (shipped as msshop.configs.experiments),
or any TOML file a teacher writes, read strictly: a wrong field is one line naming it.

    name = "products-outage"
    title = "Products is down for ten seconds"
    shows = "what the scenario is there to show"
    seconds = 20          # the load's length; fault times are within it
    read_rate = 20        # user-orders reads per second, by each strategy
    purchase_rate = 10    # purchases per second (each one a probe of staleness)

    workload = "purchases"  # instead of reads (the default, "reads"): every write strategy
                          # buys purchase_rate per second, side by side (issue 27), with
    stock = 1000000       # each of its products' stock,
    credit = 100000000    # each of its users' credit,
    quantity = 1          # and each purchase's quantity

    [[faults]]
    kind = "kill"         # see KINDS
    target = "products"   # a service, or "caller->callee" for a link
    start = 5             # seconds into the load
    end = 15              # healed then
    ms = 200              # latency only
    rate = 1.0            # errors, duplicates, reorder, redelivery: the share of calls
                          # or events

`--seconds N` runs the same schedule squeezed or stretched to N seconds.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msshop.contracts.errors import InvalidArgument, UsageError
from msshop.contracts.shipped import toml_files
from msshop.contracts.topology import NAMES

# kind -> (what it does, where it acts: "service", "link" or "either")
KINDS: dict[str, tuple[str, str]] = {
    "kill": ("SIGKILL, as a crash would; started again at the end", "service"),
    "stop": ("stopped cleanly (SIGTERM); started again at the end", "service"),
    "pause": ("SIGSTOP: frozen, sockets open; SIGCONT at the end", "service"),
    "crash-applying": ("a backlog of orders published, and the query service SIGKILLed "
                       "while it applies them; started again at the end", "service"),
    "latency": ("every request (or every call on the link) waits `ms` first", "either"),
    "errors": ("a share (`rate`) of requests or calls fail", "either"),
    "partition": ("the caller cannot reach the callee; nothing else changes", "link"),
    "duplicates": ("the bus hands the caller a share (`rate`) of events again, out of "
                   "order", "link"),
    "reorder": ("the bus hands the caller a share (`rate`) of the aggregates updated "
                "several times in a page those updates newest first", "link"),
    "redelivery": ("the bus hands the caller a share (`rate`) of events again once, late: "
                   "at the start of a later page", "link"),
}
BUS_ONLY = ("duplicates", "reorder", "redelivery")  # delivery faults: only the bus has them
SCENARIO_FIELDS = {"name": str, "title": str, "shows": str, "seconds": float,
                   "read_rate": float, "purchase_rate": float, "faults": list,
                   "workload": str, "stock": float, "credit": float, "quantity": float}
WORKLOADS = ("reads", "purchases")
PURCHASES_ONLY = ("stock", "credit", "quantity")  # what a reads workload does not take
FAULT_FIELDS = {"kind": str, "target": str, "start": float, "end": float, "ms": float,
                "rate": float}
MAX_SECONDS = 600.0
MAX_RATE = 1000.0
# A scenario's name goes into a folder's name and the report: a plain identifier, never a
# path (issue 23: a "/" in it ended in a traceback from making the run's folder).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
NAME_RULE = "letters, digits, - and _, starting with a letter or digit, at most 64"


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str  # a service, or caller->callee
    start: float
    end: float
    ms: float = 0.0
    rate: float = 1.0

    @property
    def link(self) -> tuple[str, str] | None:
        caller, arrow, callee = self.target.partition("->")
        return (caller, callee) if arrow else None

    @property
    def label(self) -> str:
        """How a chart names it, e.g. "products killed", "query->bus partitioned"."""
        words = {"kill": "killed", "crash-applying": "killed while applying",
                 "stop": "stopped", "pause": "paused",
                 "latency": f"+{self.ms:g} ms", "errors": f"{self.rate:.0%} errors",
                 "partition": "partitioned", "duplicates": "duplicates",
                 "reorder": "reordered", "redelivery": "redelivered late"}
        return f"{self.target} {words[self.kind]}"

    def scaled(self, factor: float) -> Fault:
        return Fault(self.kind, self.target, self.start * factor, self.end * factor,
                     self.ms, self.rate)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    shows: str
    seconds: float
    read_rate: float
    purchase_rate: float
    faults: tuple[Fault, ...]
    workload: str = "reads"  # or "purchases" (WORKLOADS)
    stock: int = 1_000_000  # purchases: each product's stock
    credit: float = 100_000_000.0  # purchases: each user's credit
    quantity: int = 1  # purchases: each one's quantity

    def squeezed(self, seconds: float | None, read_rate: float | None) -> Scenario:
        """The same schedule over `seconds` (faults at the same fractions of the run), and
        `read_rate` reads/s per strategy with purchases in the same proportion."""
        length = self.seconds if seconds is None else _argument_in_range("seconds", seconds, 1,
                                                                         MAX_SECONDS)
        reads, purchases = self.read_rate, self.purchase_rate
        if read_rate is not None:
            reads = _argument_in_range("rate", read_rate, 1, MAX_RATE)
            purchases = max(1.0, self.purchase_rate * reads / self.read_rate)
        if read_rate is not None and self.workload == "purchases":
            purchases = reads  # a purchases scenario's rate is its purchases'
        factor = length / self.seconds
        return Scenario(self.name, self.title, self.shows, length, reads, purchases,
                        tuple(f.scaled(factor) for f in self.faults), self.workload,
                        self.stock, self.credit, self.quantity)


def available() -> dict[str, Any]:
    """Scenario files by name (configs/experiments, shipped in the package)."""
    return toml_files("experiments")


def load(name: str) -> Scenario:
    """A shipped scenario by name, or a TOML file by path (a name ending in .toml)."""
    if name.endswith(".toml"):
        path = Path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the scenario file {name}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        return parse(text, str(path))
    files = available()
    if name not in files:
        raise UsageError(f"no experiment named {name!r}; choose one of: "
                         + ", ".join(sorted(files)) + " (or give a .toml file)")
    return parse(files[name].read_text(encoding="utf-8"), f"experiment {name!r}")


def parse(text: str, origin: str) -> Scenario:
    """Read a scenario; any problem is one UsageError naming the field and what it takes."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{origin} is not valid TOML: {exc}") from None
    top = _fields(data, SCENARIO_FIELDS, origin, "")
    for required in ("name", "title", "seconds", "faults"):
        if required not in top:
            raise UsageError(f"{origin}: the field {required!r} is missing")
    if not NAME.fullmatch(top["name"]):
        raise UsageError(f"{origin}: name {top['name']!r} is not a plain name; use "
                         f"{NAME_RULE}, e.g. \"products-outage\"")
    seconds = _in_range(f"{origin}: seconds", top["seconds"], 1, MAX_SECONDS)
    faults = []
    for number, raw in enumerate(top["faults"], start=1):
        where = f"faults[{number}]"
        if not isinstance(raw, dict):
            raise UsageError(f"{origin}: {where} must be a table ([[faults]])")
        faults.append(_fault(_fields(raw, FAULT_FIELDS, origin, where + "."), seconds,
                             f"{origin}: {where}"))
    workload = top.get("workload", "reads")
    if workload not in WORKLOADS:
        raise UsageError(f"{origin}: workload {workload!r} is not one; choose one of: "
                         + ", ".join(WORKLOADS))
    if workload == "reads":
        for key in PURCHASES_ONLY:
            if key in top:
                raise UsageError(f"{origin}: {key} is for a purchases workload; add "
                                 "workload = \"purchases\", or leave it out")
    elif "read_rate" in top:
        raise UsageError(f"{origin}: read_rate is for a reads workload; a purchases "
                         "workload has purchase_rate alone")
    return Scenario(
        top["name"], top["title"], str(top.get("shows", "")).strip(), seconds,
        _in_range(f"{origin}: read_rate", top.get("read_rate", 20.0), 1, MAX_RATE),
        _in_range(f"{origin}: purchase_rate", top.get("purchase_rate", 10.0), 1, MAX_RATE),
        tuple(faults), workload,
        int(_whole(f"{origin}: stock", top.get("stock", 1_000_000), 0, 1_000_000_000)),
        _in_range(f"{origin}: credit", top.get("credit", 100_000_000.0), 0, 1_000_000_000),
        int(_whole(f"{origin}: quantity", top.get("quantity", 1), 1, 1_000)))


def _whole(what: str, value: float, low: float, high: float) -> float:
    if value != int(value):
        raise UsageError(f"{what} is {value:g}; it must be a whole number")
    return _in_range(what, value, low, high)


def _fields(data: dict[str, Any], types: dict[str, type], origin: str, prefix: str
            ) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in data.items():
        if key not in types:
            raise UsageError(f"{origin}: {prefix}{key} is not a field; the fields are: "
                             + ", ".join(types))
        want = types[key]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or isinstance(value, bool):
            kind = {float: "a number", str: "a string", list: "a list"}[want]
            raise UsageError(f"{origin}: {prefix}{key} must be {kind}, not {value!r}")
        checked[key] = value
    return checked


def _fault(raw: dict[str, Any], seconds: float, where: str) -> Fault:
    for required in ("kind", "target", "start", "end"):
        if required not in raw:
            raise UsageError(f"{where}.{required} is missing")
    kind, target = raw["kind"], raw["target"]
    if kind not in KINDS:
        raise UsageError(f"{where}.kind {kind!r} is not a fault; choose one of: "
                         + ", ".join(KINDS))
    acts_on = KINDS[kind][1]
    caller, arrow, callee = target.partition("->")
    if arrow:
        if acts_on == "service":
            raise UsageError(f"{where}.target {target!r}: {kind} acts on a service, "
                             "not a link; name one, e.g. \"products\"")
        for name in (caller, callee):
            if name not in NAMES:
                raise UsageError(f"{where}.target {target!r}: {name!r} is not a service; "
                                 "choose from: " + ", ".join(NAMES))
        if caller == callee:
            raise UsageError(f"{where}.target {target!r}: a link joins two services")
        if kind in BUS_ONLY and callee != "bus":
            raise UsageError(f"{where}.target {target!r}: {kind} come from the bus; "
                             "give caller->bus")
    elif acts_on == "link":
        raise UsageError(f"{where}.target {target!r}: {kind} acts on a link; give "
                         "caller->callee, e.g. \"query->bus\"")
    elif target not in NAMES:
        raise UsageError(f"{where}.target {target!r} is not a service; choose from: "
                         + ", ".join(NAMES))
    elif kind == "crash-applying" and target != "query":
        raise UsageError(f"{where}.target {target!r}: crash-applying kills the service "
                         "that applies the bus's events; give \"query\"")
    start = _in_range(f"{where}.start", raw["start"], 0, seconds)
    end = _in_range(f"{where}.end", raw["end"], 0, seconds)
    if end <= start:
        raise UsageError(f"{where}: end ({end:g}) must come after start ({start:g})")
    if kind == "latency" and "ms" not in raw:
        raise UsageError(f"{where}.ms is missing: how many milliseconds to add")
    ms = _in_range(f"{where}.ms", raw.get("ms", 0.0), 0, 60_000)
    rate = _in_range(f"{where}.rate", raw.get("rate", 1.0), 0, 1)
    return Fault(kind, target, start, end, ms, rate)


def _argument_in_range(parameter: str, value: float, low: float, high: float) -> float:
    """A value the caller gave (the CLI's --seconds, --rate), named by its parameter."""
    if not low <= value <= high:
        raise InvalidArgument(f"{{{parameter}}} is {value:g}; it must be from {low:g} to "
                              f"{high:g}", parameter)
    return float(value)


def _in_range(what: str, value: float, low: float, high: float) -> float:
    if not low <= value <= high:
        raise UsageError(f"{what} is {value:g}; it must be from {low:g} to {high:g}")
    return float(value)
