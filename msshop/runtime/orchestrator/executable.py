"""The kind of process a program of your own is: any executable, in any language, that runs
as one of the services instead of msshop's (`[services.query] command = [...]`,
MSSHOP_QUERY_COMMAND, `msshop up --service query='...'`).

It learns everything from its environment and one file (the contract of docs/protocol.md):
MSSHOP_SERVICE, MSSHOP_HOST, MSSHOP_PORT, MSSHOP_DATA_DIR (its own directory,
<sandbox>/data/<service>/), MSSHOP_SERVICE_FILE (service.json there, mode 0600, written
just before each start: the peers' URLs, the bus, and the secrets, which are nowhere
else: not on its command line, not in an environment, not in a log) and MSSHOP_PROTOCOL.
It binds its port itself; its readiness is GET /health there, as for msshop's services.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from msshop.contracts import streams
from msshop.contracts.config import Settings
from msshop.contracts.credentials import digest, service_credential
from msshop.contracts.errors import SandboxError
from msshop.contracts.kinds import Kind
from msshop.contracts.protocol import PROTOCOL
from msshop.contracts.topology import BUS_DOOR, ServiceSpec
from msshop.runtime.orchestrator.health import probe_or_why
from msshop.runtime.orchestrator.kind import ChildProcess, Health
from msshop.runtime.orchestrator.ports import PortBook, url_host
from msshop.runtime.orchestrator.process import ExecProcess
from msshop.runtime.orchestrator.state import SandboxPaths, ServiceState, State
from msshop.runtime.platform.landlock import Confinement, kernel_rule

SERVICE_FILE = "service.json"
# A probe: the /health document, or why none came (health.probe_or_why)
ProbeOrWhy = Callable[[str, int, float], "dict[str, Any] | str"]


class ExecutableProcess(ExecProcess):
    """The program, exec'd in the directory `msshop up` ran in, with its environment."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: str,
                 log_path: Path, confinement: Confinement | None = None) -> None:
        super().__init__(name, log_path, confinement)
        self.argv, self.env, self.cwd = argv, env, cwd

    def program(self) -> tuple[list[str], dict[str, str] | None, str | None]:
        return self.argv, self.env, self.cwd


# (name, argv, env, cwd, log path, its Landlock rule or None) -> the process, not started
ExecutableFactory = Callable[[str, list[str], dict[str, str], str, Path, Confinement | None],
                             ChildProcess]


class ExecutableKind:
    """A program given a port, a data directory of its own and a credential in a file."""

    name = Kind.EXECUTABLE
    stops_alone = False

    def __init__(self, settings: Settings, *,
                 new_process: ExecutableFactory = ExecutableProcess,
                 probe: ProbeOrWhy = probe_or_why, cwd: str | None = None) -> None:
        self.settings = settings
        self.paths = SandboxPaths(settings.sandbox_dir)
        self.new_process = new_process
        self.probe = probe
        self.cwd = cwd or str(Path.cwd())  # where `msshop up` ran: a relative path means that
        self.argv: dict[str, list[str]] = {}  # each one's, as last started

    def reserve(self, spec: ServiceSpec, ports: PortBook) -> list[ServiceState]:
        command = list(self.settings.commands[spec.name])
        self.program(spec.name, command)  # one that does not exist: refused before any start
        self.check_reads()
        base = self.settings.base_port
        port = ports.listen(spec.name, base + spec.port_offset if base else 0)
        return [ServiceState(
            name=spec.name, port=port, url=f"http://{url_host(ports.host)}:{port}",
            db=str(spec.data_dir(self.paths.root)), log=str(spec.log_path(self.paths.root)),
            kind=self.name, command=command,
            isolation="kernel" if kernel_rule(self.settings.kernel_isolation) else "none")]

    def check_reads(self) -> None:
        """isolation.read names what exists, and nothing of the sandbox (which the rule is
        there to keep): else one line, before anything starts."""
        if not kernel_rule(self.settings.kernel_isolation):
            return
        sandbox = self.paths.root.resolve()
        for path in self.settings.isolation_read:
            if not path.exists():
                raise SandboxError(f"isolation.read names {path}, which does not exist; fix "
                                   "the path (MSSHOP_ISOLATION_READ or [isolation] read)")
            if path.resolve().is_relative_to(sandbox):
                raise SandboxError(f"isolation.read names {path}, inside the sandbox: a "
                                   "program of your own may read only its own directory "
                                   "there; remove it (MSSHOP_ISOLATION_READ or [isolation] "
                                   "read)")

    def program(self, name: str, command: list[str]) -> str:
        """The path of the command's program, looked up as a shell would (on PATH, or
        relative to the directory `msshop up` ran in); a SandboxError if there is none."""
        first = command[0]
        if "/" in first:
            path = Path(self.cwd, first)
            found = str(path) if path.is_file() and os.access(path, os.X_OK) else None
        else:
            found = shutil.which(first)
        if found is None:
            where = ("is not an executable file" if "/" in first
                     else "is not a program on PATH")
            raise SandboxError(
                f"{name}'s command `{shlex.join(command)}` cannot run: {first} {where}; "
                f"install it or fix the command (--service {name}=..., "
                f"MSSHOP_{name.upper()}_COMMAND or [services.{name}] command)")
        return found

    def part(self, service: ServiceState) -> str:
        return service.name

    def own_ports(self, service: ServiceState) -> list[tuple[int, str]]:
        return []  # it binds the port it is given, which the supervisor holds until then

    def warm_up(self, names: Sequence[str]) -> None:
        pass  # nothing of ours to import

    def spawn(self, service: ServiceState, sandbox: State) -> ChildProcess:
        command = list(service.command or [])
        argv = self.argv[service.name] = [self.program(service.name, command), *command[1:]]
        data_dir = Path(service.db)
        service_file = write_service_file(data_dir, service_document(service, sandbox))
        env = {**os.environ,
               "MSSHOP_SERVICE": service.name, "MSSHOP_HOST": sandbox.host,
               "MSSHOP_PORT": str(service.port), "MSSHOP_DATA_DIR": str(data_dir),
               "MSSHOP_SERVICE_FILE": str(service_file), "MSSHOP_PROTOCOL": str(PROTOCOL)}
        confinement = None
        if kernel_rule(self.settings.kernel_isolation):
            confinement = Confinement(data_dir, self.paths.root,
                                      readable=self.settings.isolation_read)
            # the one place it may write: temporary files go there too (SQLite's, mktemp's)
            env.update(TMPDIR=str(data_dir), SQLITE_TMPDIR=str(data_dir))
        return self.new_process(service.name, argv, env, self.cwd, Path(service.log),
                                confinement)

    def health(self, service: ServiceState, host: str, timeout: float) -> Health | None:
        answer = self.probe(host, service.port, timeout)
        return answer if isinstance(answer, dict) else None

    def ready(self, service: ServiceState, host: str, timeout: float) -> Health | None:
        """Its /health; a program found listening on another port than the one it was
        given cannot become ready: it is stopped, with the reason as its log's last word
        (which the supervisor quotes)."""
        answer = self.probe(host, service.port, timeout)
        if isinstance(answer, dict):
            return answer
        if service.pid is not None and running_as(service.pid, self.argv[service.name]):
            elsewhere = [address for address in listening(service.pid)
                         if address[1] != service.port]
            if elsewhere:
                self.refuse(service, elsewhere[0])
        return None

    def refuse(self, service: ServiceState, address: tuple[str, int]) -> None:
        host, port = address
        line = (f"{service.name} could not start: {service.name} listens on "
                f"{url_host(host)}:{port}, not on the port it was given, {service.port} "
                f"(MSSHOP_PORT); make it bind $MSSHOP_HOST:$MSSHOP_PORT (msshop stopped it)")
        with Path(service.log).open("a", encoding="utf-8") as log:
            log.write(line + "\n")
        if service.pid is not None:  # our child, not yet reaped: the pid is still its own
            with contextlib.suppress(OSError):
                os.killpg(service.pid, signal.SIGKILL)

    def unready(self, service: ServiceState, host: str) -> str:
        why = self.probe(host, service.port, 0.5)
        said = "it answered" if isinstance(why, dict) else why
        return (f"GET /health on {url_host(host)}:{service.port}, the port it was given "
                f"(MSSHOP_PORT): {said}")

    def remove_data(self, service: ServiceState) -> None:
        shutil.rmtree(service.db, ignore_errors=True)

    def worth_showing(self, lines: list[str]) -> list[str]:
        return lines

    def joined(self, sandbox: State) -> None:
        pass  # its service.json names its peers, and the dashboard is none of them


def service_document(service: ServiceState, sandbox: State) -> dict[str, Any]:
    """service.json: what the program needs to know, secrets included (contract v1)."""
    name = service.name
    credential = service_credential(sandbox.token, name)
    # each of msshop's services it calls is reached through the door it keeps for this
    # program, where the faults on that link are applied (links.py's Doors)
    peers = {n: (f"http://{url_host(sandbox.host)}:{s.doors[name]}"
                 if s.doors and name in s.doors else s.url)
             for n, s in sandbox.services.items()
             if n not in (name, BUS_DOOR.name) and s.url.startswith("http")}
    bus: dict[str, Any]
    if sandbox.bus.backend == "nats":
        # the managed bus signs it in as itself, with its credential, allowed to read only
        # (broker.foreign_reader), its replies under _INBOX.<user>.; with bus.url, whoever
        # runs that server decides, and every part signs in with the URL's user
        address = sandbox.bus.address(name, sandbox.token)
        # it reads through its door (services/bus_door), where its delivery faults are
        door = sandbox.services.get(BUS_DOOR.name)
        servers = ([f"nats://{url_host(sandbox.host)}:{door.doors[name]}"]
                   if door is not None and door.doors and name in door.doors
                   else list(address.servers))
        bus = {"backend": "nats", "servers": servers,
               "stream": address.stream, "subjects": streams.all_subjects(sandbox.bus.sandbox),
               "user": address.user, "password": address.password}
    else:
        bus = {"backend": "log", "url": peers.get("bus", "")}
    return {"protocol": PROTOCOL, "service": name, "host": sandbox.host, "port": service.port,
            "data_dir": service.db, "peers": peers, "credential": credential,
            "owner_digest": digest(sandbox.token), "bus": bus}


def write_service_file(data_dir: Path, document: dict[str, Any]) -> Path:
    """Written whole (a rename) and readable by its owner only: it holds the credential."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / SERVICE_FILE
    tmp = path.with_name(f".{SERVICE_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=2)
    tmp.replace(path)
    return path


def running_as(pid: int, argv: list[str]) -> bool:
    """Process `pid` runs `argv` (it has exec'd it: before, it is a fork of the supervisor,
    with the supervisor's sockets still open)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == "\0".join(argv).encode() + b"\0"
    except OSError:
        return False


def listening(pid: int) -> list[tuple[str, int]]:
    """The TCP addresses process `pid` listens on (Linux: its sockets' inodes found in
    /proc/<pid>/net/tcp and tcp6); none where /proc cannot tell."""
    links = []
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # closed while looked at
                links.append(str(fd.readlink()))
    except OSError:  # gone, or no /proc (macOS)
        return []
    inodes = {link[8:-1] for link in links if link.startswith("socket:[")}
    found = []
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                host, _, port = fields[1].partition(":")
                found.append((_address(host), int(port, 16)))
    return found


def _address(hex_host: str) -> str:
    """/proc/net/tcp's address: 32-bit words in the host's byte order."""
    import ipaddress
    import sys

    raw = bytes.fromhex(hex_host)
    words = [raw[i:i + 4][::-1] if sys.byteorder == "little" else raw[i:i + 4]
             for i in range(0, len(raw), 4)]
    return str(ipaddress.ip_address(b"".join(words)))
