"""Where a sandbox lives on disk, and the state file that tells every command what runs there.

Layout of a sandbox directory:
    data/<service>/     each service's own directory (0700), the one place its process
                        may write (its Landlock rule): <service>.db, its SQLite file (plus
                        its -wal and -shm); a program of your own run as that service
                        finds service.json there (mode 0600: its port, peers and
                        credential). A sandbox made with data/<service>.db side by side
                        is moved over at `up` (layout.py)
    data/sandbox.id     the sandbox's identity, made at its first `up` and kept with the
                        data: its bus log and its NATS stream and subjects are named by it
    data/nats/<node>/   with the nats bus: each nats-server's JetStream store
    nats/<node>.conf    with the nats bus: each nats-server's config (mode 0600)
    logs/<service>.log  each service's log; logs/supervisor.log for the supervisor
    state.json          pids, ports, status and the control token (mode 0600)
    supervisor.lock     held (flock) by the live supervisor for as long as it runs

The lock, not the pid in state.json, says whether a sandbox is running: the kernel drops it
when the supervisor dies, however it dies, so a stale state file is told apart from a live
one without trusting a pid that may have been reused.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msshop.contracts.credentials import service_credential
from msshop.contracts.errors import SandboxError
from msshop.contracts.kinds import Kind

if TYPE_CHECKING:
    from msshop.bus.jetstream import NatsAddress

STATE_VERSION = 1


@dataclass(frozen=True)
class SandboxPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def nats(self) -> Path:
        return self.root / "nats"

    def nats_store(self, node: str) -> Path:
        return self.data / "nats" / node

    @property
    def identity_file(self) -> Path:
        return self.data / "sandbox.id"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "supervisor.lock"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    def create(self) -> None:
        """Make the sandbox's folders, readable by their owner only: the databases and the
        logs hold the shop's data (another user on a shared machine must not read them)."""
        try:
            for folder in (self.root, self.data, self.logs):
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                if folder.stat().st_mode & 0o077:
                    folder.chmod(0o700)
        except OSError as exc:
            raise SandboxError(
                f"cannot create sandbox directory {self.root}: {exc.strerror}; "
                "choose another with --sandbox DIR or MSSHOP_SANDBOX"
            ) from None


@dataclass
class ServiceState:
    name: str
    port: int
    url: str
    db: str
    log: str
    status: str = "stopped"  # starting | running | stopped | crashed | failed
    pid: int | None = None
    exit: str | None = None  # how it last ended, e.g. "killed by SIGKILL"
    started_at: float | None = None
    ready_ms: float | None = None  # fork to ready, by the service's own report
    # service (an msshop process) | nats-server (a node of the bus) | executable (a
    # program of your own, run as that service: its command)
    kind: str = Kind.SERVICE
    monitor_port: int | None = None  # nats-server: where its health is asked
    route_port: int | None = None  # nats-server in a cluster: where the nodes meet
    command: list[str] | None = None  # executable: the program and its arguments
    # msshop's service called by a program of your own: by caller, the port that caller's
    # calls arrive on (its door: the URL its service.json gives, where its link's faults are)
    doors: dict[str, int] | None = None
    # who holds the isolation rule: kernel (its Landlock ruleset) | process (msshop's
    # in-process guard only) | none (a program of your own where the kernel does not)
    isolation: str = ""


@dataclass
class BusState:
    """What carries the events, and how the CLI reaches it."""

    backend: str = "log"  # log | nats
    sandbox: str = ""  # the sandbox's identity (data/sandbox.id): whose events these are
    stream: str = ""  # nats: the stream (contracts/streams.py names it)
    servers: list[str] = field(default_factory=list)  # nats: client URLs, every node
    external: bool = False  # nats: a server msshop did not start (bus.url)
    user: str = ""  # nats, external: the credentials in bus.url, which everyone uses
    password: str = ""
    replicas: int = 1
    dedup_window: float = 120.0

    def address(self, who: str, token: str, timeout: float = 2.0) -> NatsAddress:
        """How `who` (a service, or "owner": the CLI) reaches the nats bus."""
        from msshop.bus.jetstream import NatsAddress

        if self.external:
            return NatsAddress(tuple(self.servers), self.sandbox, self.stream, self.user,
                               self.password, self.replicas, self.dedup_window, timeout)
        password = token if who == "owner" else service_credential(token, who)
        return NatsAddress(tuple(self.servers), self.sandbox, self.stream, who, password,
                           self.replicas, self.dedup_window, timeout, f"_INBOX.{who}")


@dataclass
class State:
    sandbox: str
    host: str
    supervisor_pid: int
    control_port: int
    token: str
    mode: str  # foreground | detached
    started_at: float
    services: dict[str, ServiceState] = field(default_factory=dict)
    bus: BusState = field(default_factory=BusState)
    version: int = STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> State:
        services = {name: ServiceState(**s) for name, s in data.pop("services").items()}
        bus = BusState(**data.pop("bus", {}))
        return cls(services=services, bus=bus, **data)


def sandbox_identity(paths: SandboxPaths) -> str:
    """The sandbox's identity: read from data/sandbox.id, or made there at its first `up`
    (random, 12 hex digits). It outlives `down` (state.json goes, data stays), so a
    restarted sandbox finds its own stream and log again."""
    from msshop.contracts.streams import NAME

    path = paths.identity_file
    try:
        identity = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        made = secrets.token_hex(6)
        tmp = path.with_name(f"sandbox.id.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(made + "\n")
        tmp.replace(path)
        return made
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not text"
        raise SandboxError(f"cannot read the sandbox's identity {path}: {why}; remove it to "
                           "make a new one (then rebuild the read model: msshop replay "
                           "query)") from None
    if NAME.fullmatch(identity) is None:
        raise SandboxError(f"the sandbox's identity in {path} is damaged ({identity[:20]!r}: "
                           "letters, digits, - and _ expected); remove it to make a new one "
                           "(then rebuild the read model: msshop replay query)")
    return identity


def write_state(paths: SandboxPaths, state: State) -> None:
    """Replace the state file atomically, readable by its owner only (it holds the token)."""
    tmp = paths.state_file.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(state.to_json())
    tmp.replace(paths.state_file)


def read_state(paths: SandboxPaths) -> State | None:
    try:
        text = paths.state_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:  # e.g. the sandbox "directory" is a file
        raise SandboxError(f"cannot read {paths.state_file}: {exc.strerror}; is {paths.root} "
                           "a sandbox directory? choose one with --sandbox DIR") from None
    try:
        return State.from_dict(json.loads(text))
    except (ValueError, TypeError, KeyError):
        raise SandboxError(
            f"state file {paths.state_file} is damaged; if no sandbox runs there, delete it"
        ) from None


def remove_state(paths: SandboxPaths) -> None:
    paths.state_file.unlink(missing_ok=True)


class SupervisorLock:
    """An flock on supervisor.lock, held by the running supervisor until it exits."""

    def __init__(self, paths: SandboxPaths) -> None:
        self.path = paths.lock_file
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def is_running(paths: SandboxPaths) -> bool:
    """True while a supervisor holds the sandbox's lock."""
    if not paths.lock_file.exists():
        return False
    probe = SupervisorLock(paths)
    if probe.acquire():
        probe.release()
        return False
    return True


def pid_alive(pid: int) -> bool:
    """True if `pid` runs and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return stat.rpartition(")")[2].split()[0] != "Z"
