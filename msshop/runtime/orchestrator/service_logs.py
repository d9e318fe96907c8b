"""`msshop logs`: the sandbox's log files, one service's or all merged by time, filtered
(--since, --grep), and --follow.

Logs outlive the sandbox (they stay on disk after `down`), so reading them needs no running
supervisor: that is when you most want to see why a service failed.

Two kinds of time stamp meet here. msshop's own lines (the services', the supervisor's)
begin with the local time of day and no date: `17:14:14.867 users INFO …`. A nats-server's
begin with its pid, then the local date and time to the microsecond, then a level:
`[10127] 2026/11/24 17:14:14.394933 [INF] …`. Compared as text, every nats line would sort
after every msshop line, so each line's stamp becomes one comparable moment (unix seconds)
first. A line with no date takes the date of the line after it (the last line: the day the
file was last written), a day earlier where the clock jumps back over midnight; a line
with no stamp at all (a traceback's) belongs to the line before it.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from msshop.contracts.config import Settings
from msshop.contracts.errors import InvalidArgument, SandboxError, UsageError
from msshop.contracts.topology import BY_NAME, DASHBOARD
from msshop.runtime.orchestrator.log_files import LogFollower, complete_lines
from msshop.runtime.orchestrator.state import SandboxPaths, is_running

FOLLOW_POLL = 0.1
DEFAULT_LINES = 40
MIDNIGHT = 12 * 3600.0  # a clock that runs back more than this from one line to the next
# (read backwards: forward) has passed midnight; less is two processes' lines interleaved

# msshop's own (runtime/platform/runner.py, orchestrator/printer.py): time, who, level
OWN_STAMP = re.compile(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) \S+ ([A-Z]+)(?: (.*))?")
# nats-server's (logtime on): [pid] date time [LVL]
NATS_STAMP = re.compile(
    r"\[\d+\] (\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{1,9}) \[([A-Z]{3})\](?: (.*))?")
NATS_LEVELS = {"TRC": "TRACE", "DBG": "DEBUG", "INF": "INFO", "WRN": "WARNING",
               "ERR": "ERROR", "FTL": "CRITICAL"}
DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CLOCK = re.compile(r"(\d{1,2}):(\d\d)(?::(\d\d))?")


@dataclass(frozen=True)
class Stamp:
    """What a line's beginning says: when (the time of day, and the date if it has one),
    the level, and the message after them."""

    clock: float  # seconds since local midnight
    day: dt.date | None  # None: the line gives no date (msshop's own format)
    level: str  # DEBUG, INFO, WARNING, ERROR, CRITICAL (nats: also TRACE)
    message: str


@dataclass(frozen=True)
class LogLine:
    service: str  # whose log: a service, "supervisor", or a nats node (bus-2 …)
    line: str  # as written
    at: float | None  # unix seconds; None: no stamp in this log to go by
    level: str | None
    message: str  # the line after its stamp and level (all of it, if it has none)


@dataclass(frozen=True)
class LogView:
    """What `msshop logs` prints: the logs read (for the width of the name column), and
    the lines, checked and ready to be iterated."""

    names: list[str]
    lines: Iterator[LogLine]


def stamp(line: str) -> Stamp | None:
    """The stamp a line begins with, in either format; None for a line without one."""
    own = OWN_STAMP.fullmatch(line)
    if own is not None:
        hour, minute, second, millis = (int(own.group(k)) for k in range(1, 5))
        return Stamp(hour * 3600 + minute * 60 + second + millis / 1000, None, own.group(5),
                     own.group(6) or "")
    nats = NATS_STAMP.fullmatch(line)
    if nats is not None:
        year, month, day, hour, minute, second = (int(nats.group(k)) for k in range(1, 7))
        try:
            date = dt.date(year, month, day)
        except ValueError:
            return None
        fraction = int(nats.group(7)) / 10 ** len(nats.group(7))
        return Stamp(hour * 3600 + minute * 60 + second + fraction, date,
                     NATS_LEVELS.get(nats.group(8), nats.group(8)), nats.group(9) or "")
    return None


def timed(service: str, lines: Sequence[str], written: dt.datetime,
          before: LogLine | None = None) -> list[LogLine]:
    """One log's lines, each with its moment. `written`: when the last of them was
    written (the file's modification time); `before`: the line just before these, whose
    moment a first line without a stamp takes."""
    stamps = [stamp(line) for line in lines]
    moments: list[float | None] = [None] * len(lines)
    day, later = written.date(), _clock_of(written)
    for index in reversed(range(len(lines))):  # backwards: dates come from what follows
        found = stamps[index]
        if found is None:
            continue
        if found.day is not None:
            day = found.day
        elif found.clock - later > MIDNIGHT:
            day -= dt.timedelta(days=1)
        later = found.clock
        moments[index] = _moment(day, found.clock)
    first = next((m for m in moments if m is not None), None)
    at, level = (before.at, before.level) if before is not None else (first, None)
    timed_lines = []
    for line, found, moment in zip(lines, stamps, moments, strict=True):
        if found is None:  # a traceback's line, say: part of the line before it
            timed_lines.append(LogLine(service, line, at, level, line))
            continue
        at, level = moment, found.level
        timed_lines.append(LogLine(service, line, at, level, found.message))
    return timed_lines


def _clock_of(moment: dt.datetime) -> float:
    return (moment.hour * 3600 + moment.minute * 60 + moment.second
            + moment.microsecond / 1_000_000)


def _moment(day: dt.date, clock: float) -> float:
    """Local date and time of day as unix seconds (the files' stamps are local time)."""
    midnight = dt.datetime.combine(day, dt.time())
    return (midnight + dt.timedelta(seconds=clock)).timestamp()


def since_moment(text: str, now: dt.datetime) -> float:
    """`--since`: a duration back from now (30s, 5m, 2h, 1d, 1h30m) or a clock time today
    (HH:MM or HH:MM:SS), as unix seconds."""
    if DURATION.fullmatch(text):
        seconds = sum(float(amount) * UNIT_SECONDS[unit]
                      for amount, unit in DURATION_PART.findall(text))
        return now.timestamp() - seconds
    clock = CLOCK.fullmatch(text)
    if clock is not None:
        hour, minute, second = int(clock.group(1)), int(clock.group(2)), int(
            clock.group(3) or 0)
        if hour < 24 and minute < 60 and second < 60:
            return now.replace(hour=hour, minute=minute, second=second,
                               microsecond=0).timestamp()
    raise InvalidArgument(f"{{since}} {text!r} is neither a duration (30s, 5m, 2h, 1h30m) "
                          "nor a clock time today (HH:MM or HH:MM:SS); e.g. {since} 5m",
                          "since")


def pattern(text: str) -> re.Pattern[str]:
    """`--grep`: a regular expression (Python's), searched for anywhere in a line."""
    try:
        return re.compile(text)
    except re.error as exc:
        raise InvalidArgument(f"{{grep}} {text!r} is not a regular expression ({exc}); "
                              r"escape what is meant literally, e.g. {grep} 'cost \(ms\)'",
                              "grep") from None


def sources(settings: Settings, service: str | None) -> dict[str, Path]:
    paths = SandboxPaths(settings.sandbox_dir)
    everything = {name: spec.log_path(paths.root) for name, spec in BY_NAME.items()}
    everything["supervisor"] = paths.supervisor_log
    if paths.logs.is_dir():  # a nats bus's other nodes: bus-2, bus-3 …; the bus's door
        everything.update({path.stem: path for path in sorted(paths.logs.glob("bus-*.log"))})
    if (dashboard := DASHBOARD.log_path(paths.root)).exists():  # once it ran (--ui, ui)
        everything[DASHBOARD.name] = dashboard
    if service is not None:
        if service not in everything:
            raise UsageError(f"unknown log '{service}'; choose one of: " + ", ".join(everything))
        everything = {service: everything[service]}
    present = {name: path for name, path in everything.items() if path.exists()}
    if not present:
        raise SandboxError(f"no logs yet in {paths.logs}; start a sandbox with: msshop up")
    return present


def view(settings: Settings, service: str | None, count: int | None = None,
         follow: bool = False, since: str | None = None, grep: str | None = None
         ) -> LogView:
    """The last `count` lines (None: 40, or all with `since`; 0: all) of one log or all of
    them merged by time, those since a moment and matching a pattern only; with `follow`,
    then new lines as they are written until the sandbox stops or Ctrl-C. Every argument
    is checked here, before a line is printed."""
    files = sources(settings, service)
    after = since_moment(since, dt.datetime.now()) if since is not None else None
    matching = pattern(grep) if grep is not None else None
    if count is None:
        count = 0 if since is not None else DEFAULT_LINES

    def wanted(line: LogLine) -> bool:
        if after is not None and (line.at is None or line.at < after):
            return False
        return matching is None or matching.search(line.line) is not None

    filtered = after is not None or matching is not None
    return LogView(list(files), _lines(settings, files, count, follow,
                                       wanted if filtered else None))


def _lines(settings: Settings, files: dict[str, Path], count: int, follow: bool,
           wanted: Callable[[LogLine], bool] | None) -> Iterator[LogLine]:
    """`wanted` None: every line (then only the last `count` of each log are timed)."""
    recent: list[list[LogLine]] = []
    followers: dict[str, LogFollower] = {}
    last: dict[str, LogLine | None] = {}
    for name, path in files.items():
        # the last `count` (or, filtered, every line): a huge log is not read whole for 40
        lines, end = complete_lines(path, count if count > 0 and wanted is None else 0)
        followers[name] = LogFollower(path, offset=end)  # from exactly where this read ends
        timed_lines = timed(name, lines, _written(path))
        last[name] = timed_lines[-1] if timed_lines else None
        kept = [line for line in timed_lines if wanted is None or wanted(line)]
        recent.append(kept[-count:] if count > 0 else kept)
    merged = merged_by_time(recent)
    yield from merged[-count:] if count > 0 else merged
    if not follow:
        return
    paths = SandboxPaths(settings.sandbox_dir)
    try:
        while True:
            stopped = not is_running(paths)  # before reading: its last lines are then read
            now = dt.datetime.now()
            batch = []
            for name, follower in followers.items():
                new = follower.new_lines()
                if new:
                    timed_lines = timed(name, new, now, before=last[name])
                    last[name] = timed_lines[-1]
                    batch.append([line for line in timed_lines
                                  if wanted is None or wanted(line)])
            yield from merged_by_time(batch)
            if stopped:
                return
            time.sleep(FOLLOW_POLL)
    except KeyboardInterrupt:
        return


def merged_by_time(logs: Sequence[Sequence[LogLine]]) -> list[LogLine]:
    """Several logs' lines in one order by their moments, each log's own order kept (a
    line without a moment first)."""
    return list(heapq.merge(*logs, key=lambda line: -math.inf if line.at is None
                            else line.at))


def _written(path: Path) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(path.stat().st_mtime)
    except FileNotFoundError:
        return dt.datetime.now()
