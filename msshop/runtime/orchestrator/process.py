"""One service as one forked OS process: its socket, its log file, its lifeline.

The supervisor binds the service's listening socket itself, before forking (ports.py); the
child inherits the socket and serves on it.

The lifeline is a pipe whose write end only the supervisor holds. When the supervisor dies,
however it dies, the kernel closes that end; every service sees EOF and exits. No orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import importlib
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import multiprocess
from setproctitle import setproctitle

from msshop.contracts.topology import ServiceSpec
from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.landlock import Confinement, program_files

_fork = multiprocess.get_context("fork")
PR_SET_PDEATHSIG = 1

# What uvicorn would otherwise import lazily in each child as it starts: the protocol and
# lifespan classes its Config.load() picks by name (5-8 ms per child, three children at
# once on two cores).
LAZY_IN_CHILDREN = ("uvicorn.protocols.http.httptools_impl", "uvicorn.lifespan.on")


def preload(specs: Sequence[ServiceSpec]) -> None:
    """Import what these services run on, in the supervisor, so that each fork starts warm
    (the stack is imported once, not once per child). Already imported: nothing to do."""
    importlib.import_module("msshop.runtime.platform.runner")
    for module in LAZY_IN_CHILDREN:
        importlib.import_module(module)
    for spec in specs:
        importlib.import_module(spec.entry.partition(":")[0])


def describe_exit(exitcode: int) -> str:
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    return f"exited with code {exitcode}"


class ForkedProcess:
    """Watch and stop one forked process (a service, or a nats-server node); subclasses
    fork it in `start` and keep it in `_process`."""

    def __init__(self) -> None:
        self._process: Any = None
        self.started_at: float | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else int(self._process.pid)

    def exitcode(self) -> int | None:
        """None while running (or never started); the exit code once it has ended."""
        if self._process is None:
            return None
        code = self._process.exitcode
        return None if code is None else int(code)

    def alive(self) -> bool:
        return self._process is not None and self._process.exitcode is None

    # Stopping is three steps, not one call, so that the supervisor can send SIGTERM to a
    # whole stage and then wait for all of it: a stage stops in the time of its slowest
    # service, not in the sum of theirs.

    def terminate(self) -> None:
        """SIGTERM: the process ends its requests and closes its resources, then exits."""
        if self.alive():
            self._process.terminate()

    def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` seconds for it to end (woken by its exit, not polled);
        its exit code, or None if it still runs."""
        if self._process is None:
            return None
        self._process.join(timeout)
        return self.exitcode()

    def kill(self) -> None:
        """SIGKILL, for a process that did not end after SIGTERM."""
        if self.alive():
            self._process.kill()


class ExecProcess(ForkedProcess):
    """A program that is not ours (nats-server, a service in any language), forked like a
    service and then replaced by the program: its own process group, SIGTERM from the
    kernel if the supervisor dies (Linux), stdin /dev/null, stdout and stderr appended to
    its log. It binds its port itself: the supervisor's socket held the port until the
    child closes it just before exec, so nothing else could take it meanwhile."""

    def __init__(self, name: str, log_path: Path, confinement: Confinement | None = None
                 ) -> None:
        super().__init__()
        self.name = name
        self.log_path = log_path
        self.confinement = confinement  # its Landlock rule (None: the kernel holds none)

    def program(self) -> tuple[list[str], dict[str, str] | None, str | None]:
        """(argv with argv[0] a path, its environment (None: ours), its directory)."""
        raise NotImplementedError

    def start(self, sock: socket.socket, lifeline: tuple[int, int],
              close_in_child: Sequence[int]) -> None:
        argv, env, cwd = self.program()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        confinement = self.confinement
        if confinement is not None:  # it may read its program and the files it is given
            confinement = dataclasses.replace(
                confinement, readable=(*confinement.readable, *program_files(argv, cwd)))
        self._process = _fork.Process(
            target=exec_program,
            args=(self.name, argv, env, cwd, self.log_path,
                  (*lifeline, sock.fileno(), *close_in_child), os.getpid(), confinement),
            name=f"msshop-{self.name}", daemon=False)
        self.started_at = time.time()
        self._process.start()
        sock.close()

    # A program may start processes of its own (a shell's, node's workers): they are in its
    # process group, and stop and are killed with it.

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, number: int) -> None:
        if not self.alive() or self.pid is None:
            return
        try:
            os.killpg(self.pid, number)  # its group's id is its pid (setpgid in the child)
        except OSError:  # not yet in a group of its own: just forked
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)


def exec_program(name: str, argv: list[str], env: dict[str, str] | None, cwd: str | None,
                 log_path: Path, close_fds: tuple[int, ...], supervisor: int,
                 confinement: Confinement | None = None) -> None:
    """In the forked child: become `argv`, logging to `log_path`, under its Landlock rule
    (which exec keeps: the program and whatever it starts live under it)."""
    os.setpgid(0, 0)  # Ctrl-C reaches the supervisor, which stops the processes in order
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    for fd in close_fds:  # the lifeline, the port it binds itself, the supervisor's own
        with contextlib.suppress(OSError):
            os.close(fd)
    if sys.platform.startswith("linux"):  # the kernel's lifeline: SIGTERM when we die
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != supervisor:  # it died before that: no one would send it
            os._exit(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    try:
        if cwd is not None:
            os.chdir(cwd)
    except OSError as exc:
        os.write(2, f"{name} could not start: cannot enter {cwd}: {exc.strerror}\n".encode())
        os._exit(127)
    try:
        if confinement is not None:  # its log is open already: it needs no rule
            confinement.apply()
    except OSError as exc:
        os.write(2, f"{name} could not start: its isolation rule cannot be applied "
                 f"({exc.strerror}); fix that, or run without the kernel's rule: [isolation] "
                 f"kernel = false or MSSHOP_KERNEL_ISOLATION=0\n".encode())
        os._exit(126)
    try:
        if env is None:
            os.execv(argv[0], argv)
        os.execve(argv[0], argv, env)
    except OSError as exc:
        os.write(2, f"{name} could not start: cannot run {argv[0]}: {exc.strerror}\n"
                 .encode())
        os._exit(127)


class ServiceProcess(ForkedProcess):
    """Start, watch and stop one service process."""

    def __init__(self, spec: ServiceSpec, context: ServiceContext, log_path: Path,
                 log_level: str) -> None:
        super().__init__()
        self.spec = spec
        self.context = context
        self.log_path = log_path
        self.log_level = log_level

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self, sock: socket.socket, lifeline: tuple[int, int],
              close_in_child: Sequence[int]) -> None:
        """Fork the service. `sock` is bound; the parent's copy is closed once forked."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._process = _fork.Process(
            target=_child_main,
            args=(self.spec.entry, self.context, sock, self.log_path, self.log_level,
                  lifeline, tuple(close_in_child)),
            name=f"msshop-{self.name}",
            daemon=False,
        )
        self.started_at = time.time()
        # The child shares the supervisor's heap page by page until it writes to one; the
        # collector writes to every object it looks at. Frozen, the inherited objects are
        # not looked at in the child, so their pages stay shared (and collections stay short).
        gc.freeze()
        self._process.start()
        sock.close()


def _child_main(entry: str, context: ServiceContext, sock: socket.socket, log_path: Path,
                log_level: str, lifeline: tuple[int, int], close_fds: tuple[int, ...]) -> None:
    """First code in the forked child: detach from the terminal's signals, log to a file."""
    setproctitle(f"msshop: {context.name}")  # in ps and top; else it shows as `msshop up`
    os.setpgid(0, 0)  # Ctrl-C reaches the supervisor, which stops services in order
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    read_end, write_end = lifeline
    for fd in (write_end, *close_fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    fresh_stdio()
    from msshop.runtime.platform.runner import serve

    serve(entry, context, sock, read_end, log_level)


def fresh_stdio() -> None:
    """New sys.stdout/stderr on fds 1 and 2, dropping the parent's Python-level objects.

    A fork inherits them as they were: with unflushed bytes, or replaced by a terminal
    library's proxy that wraps lines for a screen. Neither belongs in a log file.
    """
    sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
