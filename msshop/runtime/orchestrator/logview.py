"""`msshop logs`: the sandbox's log files, one service's or all merged by time, and --follow.

Logs outlive the sandbox (they stay on disk after `down`), so reading them needs no running
supervisor: that is when you most want to see why a service failed.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator
from pathlib import Path

from msshop.contracts.config import Settings
from msshop.contracts.errors import SandboxError, UsageError
from msshop.contracts.topology import BY_NAME
from msshop.runtime.orchestrator.logs import LogFollower, tail
from msshop.runtime.orchestrator.state import SandboxPaths, is_running

FOLLOW_POLL = 0.1


def sources(settings: Settings, service: str | None) -> dict[str, Path]:
    paths = SandboxPaths(settings.sandbox_dir)
    everything = {name: spec.log_path(paths.root) for name, spec in BY_NAME.items()}
    everything["supervisor"] = paths.supervisor_log
    if paths.logs.is_dir():  # a nats bus's other nodes: bus-2, bus-3 …
        everything.update({path.stem: path for path in sorted(paths.logs.glob("bus-*.log"))})
    if service is not None:
        if service not in everything:
            raise UsageError(f"unknown log '{service}'; choose one of: " + ", ".join(everything))
        everything = {service: everything[service]}
    present = {name: path for name, path in everything.items() if path.exists()}
    if not present:
        raise SandboxError(f"no logs yet in {paths.logs}; start a sandbox with: msshop up")
    return present


def lines(settings: Settings, service: str | None, count: int, follow: bool
          ) -> Iterator[tuple[str, str]]:
    """(service, line) pairs: the last `count` lines (merged by their time stamps), then,
    with `follow`, new lines as they are written until the sandbox stops or Ctrl-C."""
    files = sources(settings, service)
    recent = [[(line[:12], name, line.rstrip("\n")) for line in tail(path, count)]
              for name, path in files.items()]
    merged = list(heapq.merge(*recent, key=lambda item: item[0]))
    if count > 0:
        merged = merged[-count:]
    for _, name, line in merged:
        yield name, line
    if not follow:
        return
    followers = {name: LogFollower(path) for name, path in files.items()}
    paths = SandboxPaths(settings.sandbox_dir)
    try:
        while True:
            for name, follower in followers.items():
                for line in follower.new_lines():
                    yield name, line
            if not is_running(paths):
                return
            time.sleep(FOLLOW_POLL)
    except KeyboardInterrupt:
        return
