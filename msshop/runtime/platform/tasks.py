"""The background work of a service process, supervised: the relay, the consumer, the
checkpointer, and any task added later, run under `Tasks` (one per process: the
ServiceContext's).

A task whose work raises what it did not expect (a full disk under a COMMIT, a bug) is not
left dead, as a bare asyncio task or thread would be, with a traceback at shutdown: its
supervisor logs one line with the cause at once, starts it again after a pause that
doubles (backoff.py: 10 ms up to 2 s, the shortest again once it works), and shows it in
/health ("orders' relay failing for 40 s: database or disk is full"), whose status is then
"degraded". Work that notices a failure of its own and keeps trying (the checkpointer: a
checkpoint that cannot be copied) says so with `failed()`; any work says `recovered()` once
it has done its job again, and the problem is gone from /health by itself.

The bus being down is not a task's failure: the relay and the consumer wait for it, and say
so in their own health (outbox.error, consumer.bus_error); the bus's health tells why.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path

from msshop.contracts.status import TaskHealth
from msshop.runtime.platform.backoff import Backoff, Sleep

log = logging.getLogger("msshop.tasks")

Work = Callable[[], Awaitable[None]]


class Task:
    """One piece of background work as its supervisor sees it: running, failing (since when,
    why), and how often it was started again."""

    def __init__(self, name: str, label: str, sleep: Sleep) -> None:
        self.name = name  # relay | consumer | checkpoint
        self.label = label  # "orders' relay": what /health and the log call it
        self.error: str | None = None  # why it fails, one line; None: it works
        self.failing_since: float | None = None  # unix seconds
        self.restarts = 0
        self.stopped = False
        #: more words while it fails, made when asked (the checkpointer: the WAL's size)
        self.detail: Callable[[], str] | None = None
        self.backoff = Backoff(sleep)
        self._handle: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    def failed(self, cause: str) -> None:
        """The work could not do its job and will try again: logged once per cause."""
        if self.error != cause:
            log.warning("%s failing: %s", self.label, cause)
        self.error = cause
        if self.failing_since is None:
            self.failing_since = time.time()

    def recovered(self) -> None:
        """The work has done its job again: no longer failing."""
        if self.error is not None:
            assert self.failing_since is not None
            log.info("%s works again, after failing for %.0f s", self.label,
                     time.time() - self.failing_since)
        self.error = self.failing_since = None
        self.backoff.reset()

    def crashed(self, exc: BaseException) -> float:
        """The work raised `exc`: failing, started again after the pause this returns."""
        self.restarts += 1
        pause = self.backoff.next_pause()
        cause = cause_of(exc)
        if self.error != cause:  # one line, the cause and where it came from; not again
            log.error("%s failed: %s (at %s); starting it again in %g s, and after every "
                      "failure like this one", self.label, cause, where(exc), pause)
        self.error = cause
        if self.failing_since is None:
            self.failing_since = time.time()
        return pause

    def problem(self, now: float | None = None) -> str | None:
        """What /health and `msshop status` say of it while it fails; None while it works."""
        if self.error is None or self.failing_since is None:
            return None
        seconds = max(0.0, (now or time.time()) - self.failing_since)
        detail = f"; {self.detail()}" if self.detail is not None else ""
        return f"{self.label} failing for {seconds:.0f} s: {self.error}{detail}"

    def health(self) -> TaskHealth:
        state = "stopped" if self.stopped else "failing" if self.error else "running"
        return {"name": self.name, "state": state, "error": self.error,
                "failing_since": self.failing_since, "restarts": self.restarts}

    async def stop(self) -> None:
        """Cancel the work (an asyncio task) and wait until it has ended."""
        self.stopped = True
        if self._handle is not None:
            self._handle.cancel()
            with suppress(asyncio.CancelledError):
                await self._handle
            self._handle = None

    def join(self) -> None:
        """Wait for the work's thread, once the work was told to stop."""
        self.stopped = True
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()


class Tasks:
    """The supervisor of one process's background work (`service` names it in words)."""

    def __init__(self, service: str, sleep: Sleep = asyncio.sleep) -> None:
        """`sleep`: the pause before a restart (tests pass one that records it)."""
        self.service = service
        self._sleep = sleep
        self._tasks: dict[str, Task] = {}

    def add(self, name: str) -> Task:
        """A task to be started (run, thread), shown in /health from now on."""
        task = Task(name, f"{possessive(self.service)} {name}", self._sleep)
        self._tasks[name] = task  # a task started again after a stop (a rebuild) replaces it
        return task

    def run(self, name: str, work: Work) -> Task:
        """Run `work` (an endless loop) as an asyncio task, started again whenever it raises
        or returns, until `Task.stop()`."""
        task = self.add(name)
        task._handle = asyncio.create_task(self._supervise(task, work),
                                           name=f"{self.service}-{name}")
        return task

    async def _supervise(self, task: Task, work: Work) -> None:
        while True:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                pause = task.crashed(exc)
            else:  # an endless loop that ended: as much a bug as an exception
                pause = task.crashed(RuntimeError("it returned, as it never should"))
            await self._sleep(pause)

    def thread(self, task: Task, work: Callable[[], None], stopping: threading.Event
               ) -> None:
        """Run `work` for `task` (from add()) on a thread of its own, started again whenever
        it raises, until `stopping` is set (then `work` returns) and `Task.join()`."""

        def supervised() -> None:
            while not stopping.is_set():
                try:
                    work()
                except Exception as exc:
                    stopping.wait(task.crashed(exc))
                else:
                    return

        task._thread = threading.Thread(target=supervised,
                                        name=f"{self.service}-{task.name}", daemon=True)
        task._thread.start()

    def get(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def health(self) -> list[TaskHealth]:
        return [task.health() for task in self._tasks.values()]

    def problems(self) -> list[str]:
        """One line for each task that fails now (none: every task works)."""
        now = time.time()
        return [problem for task in self._tasks.values()
                if (problem := task.problem(now)) is not None]


def possessive(service: str) -> str:
    """"orders' relay", "query's consumer": the services named as a plural take no s."""
    return f"{service}'" if service.endswith("s") and service != "bus" else f"{service}'s"


def cause_of(exc: BaseException) -> str:
    """An exception as the one line a person reads: SQLite's and the system's messages say
    enough by themselves ("database or disk is full"); anything else is named by its type."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f" ({exc.filename})" if exc.filename else "")
    text = str(exc).replace("\n", " ")
    if type(exc).__module__ == "sqlite3":
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def where(exc: BaseException) -> str:
    """The file and line the exception was raised at, for the one log line."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"
