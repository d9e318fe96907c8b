"""The managed NATS JetStream bus: nats-server processes the supervisor starts and watches
like any service (`msshop up --bus nats`, `--bus-nodes 3`).

Each node is a real nats-server, found beside this Python (the `nats` extra installs it)
or on PATH, run with a config file the supervisor writes into the sandbox (mode 0600):

- it listens on 127.0.0.1 (the sandbox's host), on ports from the usual scheme;
- its JetStream store is under the sandbox (data/nats/<node>/);
- authentication is on: the sandbox's owner (the CLI) signs in with the token, each
  service with its own credential, and may do only what it must — users, products and
  orders publish to their own subjects only, and only the event types each owns
  (contracts/streams.py's senders_rules), query reads, no service deletes anything;
  the dashboard (`up --ui`), when the sandbox runs it, may only read (dashboard_reader);
- nodes of a cluster route to each other and the stream is kept on up to three of them.

Its health is asked of the server's monitoring port (`/healthz`, `/jsz`), not of a
/health route. The process is forked like a service's, then replaced by nats-server;
on Linux the kernel sends it SIGTERM if the supervisor dies (the services' lifeline).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from msshop.contracts import streams
from msshop.contracts.credentials import service_credential
from msshop.contracts.errors import SandboxError
from msshop.contracts.topology import DASHBOARD, SERVICES
from msshop.runtime.orchestrator.ports import url_host
from msshop.runtime.orchestrator.process import ExecProcess
from msshop.runtime.orchestrator.state import BusState
from msshop.runtime.platform.landlock import Confinement

MAX_REPLICAS = 3
HINT = ("install it with: pip install 'msshop[nats]' (a wheel with the official binary), "
        "or put nats-server on PATH")


def node_names(nodes: int) -> list[str]:
    """bus, bus-2, bus-3 …: the first node keeps the bus's name, so one-node sandboxes read
    as before."""
    return ["bus", *(f"bus-{k}" for k in range(2, nodes + 1))]


def node_ports(base: int, index: int) -> tuple[int, int, int]:
    """(client, monitoring, cluster route) ports of node `index` (0-based) for a base port:
    the first node serves clients on the bus's usual port (base + 0) and has base + 5 and
    base + 6; node k (k = 2, 3 …) has base + 10k, + 10k + 1 and + 10k + 2."""
    if index == 0:
        return base, base + 5, base + 6
    first = base + 10 * (index + 1)
    return first, first + 1, first + 2


def find_server() -> str:
    """The nats-server binary: beside this Python (the `nats` extra), or on PATH."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise SandboxError(f"the nats bus needs nats-server, which is not installed; {HINT}")
    return found


def users(token: str, sandbox: str, stream: str, foreign: Collection[str] = (),
          dashboard: bool = False) -> list[dict[str, Any]]:
    """Who may sign in, and what each may do, on the sandbox's stream and subjects
    (contracts/streams.py names them for the sandbox's identity). `foreign`: the services
    run by a program of your own; one that reads gets only what reading takes
    (foreign_reader). `dashboard`: the sandbox runs the dashboard, whose feed of events
    signs in as `ui` and may only read (dashboard_reader)."""
    stream_api = [f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.STREAM.CREATE.{stream}"]
    # the owner (the CLI) may do anything but publish events: as with the sandbox's log,
    # only the services that record events append them
    entries: list[dict[str, Any]] = [{
        "user": "owner", "password": token,
        "permissions": {"publish": {"deny": [streams.all_subjects(sandbox)]}}}]
    for spec in SERVICES:
        if spec.name == "bus":
            continue
        permissions: dict[str, Any] = {"subscribe": {"allow": [f"_INBOX.{spec.name}.>"]}}
        if spec.publishes:  # its own subjects, but none of a type another service owns;
            # and it reads (the saga's steps follow the bus): its own ordered consumers
            allow, deny = streams.senders_rules(sandbox, spec.name)
            permissions["publish"] = {"allow": [*allow, *stream_api, *reader(stream)],
                                      "deny": deny}
        elif spec.name in foreign:
            permissions["publish"] = {"allow": foreign_reader(stream)}
        else:  # a reader
            permissions["publish"] = {"allow": [*stream_api, *reader(stream)]}
        entries.append({"user": spec.name, "password": service_credential(token, spec.name),
                        "permissions": permissions})
    if dashboard:
        entries.append({"user": DASHBOARD.name,
                        "password": service_credential(token, DASHBOARD.name),
                        "permissions": dashboard_reader(stream)})
    return entries


def reader(stream: str) -> list[str]:
    """What a service that follows the bus may publish: the JetStream API calls of its own
    ordered consumers, and their flow control."""
    return [f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.API.CONSUMER.DELETE.{stream}.>", "$JS.FC.>"]


def dashboard_reader(stream: str) -> dict[str, Any]:
    """The dashboard's read-only identity (issue 28: its feed of events): describe the
    stream, its own ordered consumers (made, flow-controlled, deleted), its inbox. No event
    subject, and no call that makes, changes, purges or deletes the stream: a page that is
    taken over can watch the bus, never write to it."""
    return {"publish": {"allow": [f"$JS.API.STREAM.INFO.{stream}", *reader(stream)]},
            "subscribe": {"allow": [f"_INBOX.{DASHBOARD.name}.>"]}}


def foreign_reader(stream: str) -> list[str]:
    """What a program of your own that reads the bus may publish: the JetStream API calls
    of a pull consumer of its own on the stream (describe the stream; make, fetch from and
    delete its consumer), nothing else: no event subject, and it cannot make or change the
    stream. It subscribes only to its inbox, _INBOX.<service>.> (docs/protocol.md)."""
    return [f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}.>", f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
            f"$JS.API.CONSUMER.DELETE.{stream}.>"]


def server_config(name: str, host: str, ports: tuple[int, int, int], store: Path,
                  token: str, routes: Sequence[int], sandbox: str, stream: str,
                  foreign: Collection[str] = (), dashboard: bool = False) -> str:
    """nats-server's config for one node (its format accepts JSON). `routes`: the route
    ports of every node of a cluster, none for a single server; `foreign`: the services
    run by a program of your own; `dashboard`: the sandbox runs the dashboard."""
    client, monitor, route = ports
    config: dict[str, Any] = {
        "server_name": f"msshop-{name}",
        "host": host, "port": client, "http": f"{url_host(host)}:{monitor}",
        "jetstream": {"store_dir": str(store)},
        "authorization": {"users": users(token, sandbox, stream, foreign, dashboard)},
        "logtime": True,
        "max_payload": 8 * 1024 * 1024,
    }
    if routes:
        config["cluster"] = {
            "name": "msshop", "host": host, "port": route,
            "routes": [f"nats-route://{url_host(host)}:{p}" for p in routes if p != route],
        }
    return json.dumps(config, indent=2)


def external_bus(url: str, dedup_window: float, sandbox: str, stream: str) -> BusState:
    """bus.url: servers msshop does not start, and the credentials every part signs in with
    (the same for all: whoever runs that server decides who may do what)."""
    servers, user, password = [], "", ""
    for one in url.split(","):
        parts = urlsplit(one.strip())
        user = unquote(parts.username or user)
        password = unquote(parts.password or password)
        host = parts.hostname or ""
        servers.append(f"{parts.scheme}://{url_host(host)}:{parts.port}")
    return BusState(backend="nats", sandbox=sandbox, stream=stream, servers=servers,
                    external=True, user=user, password=password, replicas=1,
                    dedup_window=dedup_window)


def worth_showing(lines: list[str]) -> list[str]:
    """A node's log lines for the live view of `msshop up`: warnings and errors only.
    nats-server says a great deal at INFO (a banner of 40 lines, every route made and
    closed), and has no setting to say less; `msshop logs bus` shows everything."""
    return [line for line in lines if "[WRN]" in line or "[ERR]" in line or "[FTL]" in line]


def write_config(path: Path, text: str) -> None:
    """Readable by its owner only: it holds the credentials."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


class BrokerProcess(ExecProcess):
    """One nats-server, driven by the supervisor like a ServiceProcess (SIGTERM stops it
    cleanly: it flushes its store)."""

    def __init__(self, name: str, config: Path, log_path: Path,
                 confinement: Confinement | None = None) -> None:
        super().__init__(name, log_path, confinement)
        self.config = config

    def program(self) -> tuple[list[str], dict[str, str] | None, str | None]:
        binary = find_server()
        return [binary, "--config", str(self.config)], None, None
