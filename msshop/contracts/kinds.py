"""The kinds of process a sandbox runs, by the name state.json and `status --json` give
each (ServiceState.kind): the one list, as contracts/strategies.py is for read strategies.
What each kind does lives behind runtime/orchestrator/kind.py's ProcessKind; the rest of
msshop only asks which kind a process is."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    SERVICE = "service"  # msshop's own, forked warm from the supervisor
    NATS_SERVER = "nats-server"  # a node of the NATS bus (--bus nats)
    EXECUTABLE = "executable"  # a program of your own, run as that service
