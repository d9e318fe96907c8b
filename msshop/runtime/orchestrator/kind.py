"""What the supervisor asks of every kind of process it runs, and of each process it starts.

The supervisor's loop (supervisor.py) knows the stages, the deadlines, the state file and
the control commands; what differs from one kind of process to another is behind
`ProcessKind`, looked up by the kind's name, which each process's `ServiceState.kind`
records. Three kinds exist: a forked Python service (forked_service.py), a node of the
managed nats bus (nats_node.py) and a program of your own run as one of the services
(executable.py). Which kind runs which part of the topology is decided in one place,
bootstrap.py.

Another kind is one more class and one more entry in bootstrap.py; the loop does not
change (tests/unit/test_supervisor.py plugs in a fake one). executable.py is the example
to follow for a process that is not ours: it binds the port it is handed (closed in the
child just before exec, process.py's ExecProcess), answers the same GET /health, keeps
its data in a directory of its own, and gets its secrets in a file of its own.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from msshop.contracts.topology import ServiceSpec
    from msshop.runtime.orchestrator.ports import PortBook
    from msshop.runtime.orchestrator.state import ServiceState, State

Health = dict[str, Any]  # a GET /health document, or a process's answer in the same shape


class Probe(Protocol):
    """health.probe or health.probe_nats: a process's health document, or None if it does
    not answer."""

    def __call__(self, host: str, port: int, timeout: float) -> Health | None: ...


class ChildProcess(Protocol):
    """One started process, as the supervisor drives it: made by a kind's `spawn`, started
    by the supervisor, and stopped in three steps (SIGTERM to a whole stage, one wait for
    all of it, SIGKILL for what still runs) so that a stage stops in the time of its
    slowest process."""

    @property
    def pid(self) -> int | None: ...

    @property
    def started_at(self) -> float | None: ...  # time.time() at the fork

    def start(self, sock: socket.socket, lifeline: tuple[int, int],
              close_in_child: Sequence[int]) -> None:
        """Fork it with its listening socket (bound, not listening), the read end of the
        lifeline (EOF: the supervisor is gone) and the descriptors it must not keep."""

    def exitcode(self) -> int | None: ...  # None while it runs

    def alive(self) -> bool: ...

    def terminate(self) -> None: ...  # SIGTERM, if it runs

    def wait(self, timeout: float) -> int | None: ...  # its exit code; None: still runs

    def kill(self) -> None: ...  # SIGKILL, if it runs


class ProcessKind(Protocol):
    """A kind of process: how its processes get their ports, start, answer for their
    health, keep their data and log, stop, and read in `msshop status`."""

    @property
    def name(self) -> str:
        """ServiceState.kind of its processes (one of contracts/kinds.py's Kind): what
        status and the CLI call it."""

    @property
    def stops_alone(self) -> bool:
        """Its processes stop one after another, after the rest of their stage (else
        together with the stage)."""

    def reserve(self, spec: ServiceSpec, ports: PortBook) -> list[ServiceState]:
        """Bind the ports of the processes that run this part of the topology (a taken one
        is a SandboxError before anything starts) and describe each process as status
        shows it: its name, ports, URL, data and log."""

    def part(self, service: ServiceState) -> str:
        """The part of the topology it runs, whose stage it starts and stops in."""

    def own_ports(self, service: ServiceState) -> list[tuple[int, str]]:
        """Ports it binds itself, each with what it is for: held by the supervisor until
        the process starts, and checked free again before a restart."""

    def warm_up(self, names: Sequence[str]) -> None:
        """Make these processes' next start quick (while the stage before them starts)."""

    def spawn(self, service: ServiceState, sandbox: State) -> ChildProcess:
        """The process for `service`, ready to start: everything it needs, not started."""

    def health(self, service: ServiceState, host: str, timeout: float) -> Health | None:
        """What it says of itself (for status and the live view); None: no answer."""

    def ready(self, service: ServiceState, host: str, timeout: float) -> Health | None:
        """Its health once it can take its work; None until then."""

    def unready(self, service: ServiceState, host: str) -> str:
        """What a person should hear of a process not ready at the startup deadline,
        besides its log (where it was asked, and what came back); "": nothing more."""

    def remove_data(self, service: ServiceState) -> None:
        """Delete what it stores (reset); its log stays."""

    def worth_showing(self, lines: list[str]) -> list[str]:
        """Its new log lines, as the live view of `msshop up` shows them."""

    def joined(self, sandbox: State) -> None:
        """A part was added to the running sandbox (the supervisor's `add`; `sandbox`
        already holds it, not started yet): bring this kind's running processes up to date
        with what they must know of it."""
