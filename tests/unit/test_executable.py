"""The executable kind (a program of your own run as a service), in process: the real
kind and the real supervisor, with fake processes and probes (tests/unit/test_supervisor.py's
World), so nothing forks. tests/e2e/test_executable.py runs real programs."""

from __future__ import annotations

import json
import os
import secrets
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from msshop.contracts import config
from msshop.contracts.config import Settings, defaults
from msshop.contracts.credentials import digest, service_credential
from msshop.contracts.errors import ConfigError, SandboxError
from msshop.runtime.orchestrator.bootstrap import bus_state, lineup
from msshop.runtime.orchestrator.executable import ExecutableKind, listening
from msshop.runtime.orchestrator.ports import PortBook
from msshop.runtime.orchestrator.supervisor import Supervisor
from msshop.runtime.platform.landlock import Confinement
from tests.unit.test_supervisor import (
    BASE_PORT,
    HOST,
    FakeProcess,
    RecordingPrinter,
    World,
    on_disk,
    stopped_sandbox,
)

PROGRAM = [sys.executable, "d.py", "--fast"]


@pytest.fixture
def world() -> World:
    return World()


def settings_with(tmp_path: Path, **values: Any) -> Settings:
    return Settings.from_values({**defaults(), "sandbox.dir": tmp_path / "sandbox",
                                 "sandbox.base_port": BASE_PORT, **values})


class Started:
    """The executable kind's process factory, faked: it records what it was given."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.given: dict[str, tuple[list[str], dict[str, str], str]] = {}

    def __call__(self, name: str, argv: list[str], env: dict[str, str], cwd: str,
                 log_path: Path, confinement: Confinement | None = None) -> FakeProcess:
        self.given[name] = (argv, env, cwd)
        process = FakeProcess(self.world, name, Path(env["MSSHOP_DATA_DIR"]), log_path)
        self.world.processes[name] = process
        return process


def supervised(tmp_path: Path, world: World, started: Started
               ) -> tuple[Supervisor, RecordingPrinter]:
    settings = settings_with(tmp_path, **{"services.query.command": tuple(PROGRAM)})
    printer = RecordingPrinter()

    def probe(host: str, port: int, timeout: float) -> dict[str, Any] | str:
        return world.probe(host, port, timeout) or "connection refused"

    kinds = {**world.kinds(settings),
             "executable": ExecutableKind(settings, new_process=started, probe=probe,
                                          cwd=str(tmp_path))}
    made = Supervisor(settings, printer, "detached", kinds=kinds, lineup=lineup(settings),
                      bus=bus_state, bind=world.bind, clock=world.clock.monotonic,
                      sleep=world.clock.sleep)
    made.paths.create()
    made.state = stopped_sandbox(made.paths)
    made.state.token = secrets.token_hex(16)  # as prepare() makes it
    made.state.services = made.reserve_all()
    return made, printer


def test_a_part_whose_settings_name_a_command_is_run_by_the_executable_kind(
        tmp_path: Path) -> None:
    settings = settings_with(tmp_path, **{"services.query.command": tuple(PROGRAM)})
    assert [kind for _, kind in lineup(settings)] == \
        ["service", "service", "service", "service", "executable"]
    assert settings.commands == {"query": tuple(PROGRAM)}


def test_it_starts_with_the_contract_and_its_secrets_only_in_its_file(
        tmp_path: Path, world: World) -> None:
    started = Started(world)
    supervisor, printer = supervised(tmp_path, world, started)
    try:
        supervisor.start_all()
        query = on_disk(supervisor, "query")
        assert (query.kind, query.status, query.command) == \
            ("executable", "running", PROGRAM)
        assert query.db == str(tmp_path / "sandbox" / "data" / "query")
        argv, env, cwd = started.given["query"]
        assert argv == PROGRAM and cwd == str(tmp_path)  # where `up` ran
        assert {key: env[key] for key in env if key.startswith("MSSHOP_") and
                key not in os.environ} == {
            "MSSHOP_SERVICE": "query", "MSSHOP_HOST": HOST,
            "MSSHOP_PORT": str(BASE_PORT + 4), "MSSHOP_DATA_DIR": query.db,
            "MSSHOP_SERVICE_FILE": f"{query.db}/service.json", "MSSHOP_PROTOCOL": "1"}
        token = supervisor._state().token
        credential = service_credential(token, "query")
        assert not any(credential in value or token in value for value in env.values())

        path = Path(query.db) / "service.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(query.db).stat().st_mode) == 0o700
        document = json.loads(path.read_text())
        # each peer is reached through the door it keeps for query's calls (where the
        # faults on that link are applied), held as the callee's own port until it starts
        doors = {name: on_disk(supervisor, name).doors or {}
                 for name in ("bus", "users", "products", "orders")}
        assert all(set(door) == {"query"} for door in doors.values()), doors
        assert [bound for bound in world.binds if "door" in bound[2]] == [
            (HOST, 0, f"{name} (the door for query's calls)") for name in doors]
        assert document == {
            "protocol": 1, "service": "query", "host": HOST, "port": BASE_PORT + 4,
            "data_dir": query.db,
            "peers": {name: f"http://{HOST}:{door['query']}" for name, door in doors.items()},
            "credential": credential, "owner_digest": digest(token),
            "bus": {"backend": "log", "url": f"http://{HOST}:{doors['bus']['query']}"}}
        assert any(message.startswith(f"query ready on http://{HOST}:{BASE_PORT + 4}")
                   for _, message in printer.events)
    finally:
        supervisor.close()


def test_one_never_healthy_is_told_the_address_it_was_asked_on(
        tmp_path: Path, world: World) -> None:
    started = Started(world)
    supervisor, _ = supervised(tmp_path, world, started)
    try:
        supervisor.start_all()
        world.unhealthy["query"] = None
        answer = supervisor.handle({"op": "restart", "service": "query"})
        assert answer == {"ok": False, "error": (
            f"query did not become healthy within 10 s (GET /health on {HOST}:"
            f"{BASE_PORT + 4}, the port it was given (MSSHOP_PORT): connection refused); "
            "see: msshop logs query")}
        assert on_disk(supervisor, "query").status == "failed"
        assert world.journal[-2:] == ["SIGTERM query", "wait query"]
    finally:
        supervisor.close()


def test_a_program_that_is_not_there_is_refused_before_any_port_is_bound(
        tmp_path: Path) -> None:
    settings = settings_with(tmp_path, **{"services.query.command": ("./not-here", "x")})
    kind = ExecutableKind(settings, cwd=str(tmp_path))
    ports = PortBook(HOST)
    from msshop.contracts.topology import BY_NAME

    with pytest.raises(SandboxError) as refused:
        kind.reserve(BY_NAME["query"], ports)
    assert refused.value.message == (
        "query's command `./not-here x` cannot run: ./not-here is not an executable file; "
        "install it or fix the command (--service query=..., MSSHOP_QUERY_COMMAND or "
        "[services.query] command)")
    assert ports.listening == {}
    (tmp_path / "not-here").write_text("#!/bin/sh\n")  # there, but not executable
    with pytest.raises(SandboxError, match="is not an executable file"):
        kind.reserve(BY_NAME["query"], ports)
    (tmp_path / "not-here").chmod(0o700)
    try:
        assert kind.reserve(BY_NAME["query"], ports)[0].command == ["./not-here", "x"]
    finally:
        ports.close()


def test_listening_finds_a_process_s_listening_sockets() -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert (HOST, port) in listening(os.getpid())
    assert (HOST, port) not in listening(os.getpid())


@pytest.mark.parametrize(("env", "expected"), [
    ({"MSSHOP_QUERY_COMMAND": "node 'my d.js' --x"}, ("node", "my d.js", "--x")),
    ({"MSSHOP_USERS_COMMAND": "./u"}, ("./u",)),
])
def test_a_command_from_the_environment_is_split_as_a_shell_would(
        env: dict[str, str], expected: tuple[str, ...]) -> None:
    assert tuple(config.load(env=env).commands.values()) == (expected,)


def test_a_command_in_a_file_is_a_table_or_a_dotted_key(tmp_path: Path) -> None:
    file = tmp_path / "my.toml"
    file.write_text('[services]\nhttp_timeout = 3\n[services.query]\ncommand = ["node", '
                    '"d.js"]\n')
    assert config.load(config_file=file, env={}).commands == {"query": ("node", "d.js")}
    file.write_text('[services]\norders.command = ["./o"]\n')
    assert config.load(config_file=file, env={}).commands == {"orders": ("./o",)}


@pytest.mark.parametrize(("where", "expected"), [
    ({"env": {"MSSHOP_QUERY_COMMAND": "node 'd.js"}},
     "services.query.command = \"node 'd.js\" (from environment variable "
     "MSSHOP_QUERY_COMMAND) is not allowed: use [] (msshop's own query service) or a "
     'program and its arguments, e.g. ["python3", "my_service.py"] (in the environment: '
     '"python3 my_service.py")'),
    ({"file": '[services.query]\ncommand = "node d.js"\n'},
     "services.query.command = 'node d.js' (from file"),
    ({"file": '[services.query]\ncommand = ["node", ""]\n'},
     "services.query.command = ['node', ''] (from file"),
    ({"env": {"MSSHOP_BUS_COMMAND": "./bus"}},
     "a program of your own as the bus is not supported yet"),
    ({"file": '[services.query]\ncomand = ["node"]\n'},
     "unknown setting 'services.query.comand'"),
])
def test_a_bad_command_is_one_line_naming_the_setting(
        tmp_path: Path, where: dict[str, Any], expected: str) -> None:
    file = None
    if "file" in where:
        file = tmp_path / "bad.toml"
        file.write_text(where["file"])
    with pytest.raises(ConfigError) as refused:
        config.load(config_file=file, env=where.get("env", {}))
    assert expected in refused.value.message
    assert "\n" not in refused.value.message


def test_on_nats_its_file_says_how_to_sign_in_to_the_stream() -> None:
    from msshop.runtime.orchestrator.executable import service_document
    from msshop.runtime.orchestrator.state import BusState, ServiceState, State

    token = secrets.token_hex(16)
    query = ServiceState(name="query", port=7104, url="http://127.0.0.1:7104",
                         db="/s/data/query", log="/s/logs/query.log", kind="executable")
    bus = ServiceState(name="bus", port=7100, url="nats://127.0.0.1:7100", db="", log="")
    sandbox = State(sandbox="/s", host=HOST, supervisor_pid=1, control_port=1, token=token,
                    mode="detached", started_at=0.0,
                    services={"bus": bus, "query": query},
                    bus=BusState(backend="nats", sandbox="abc", stream="msshop-abc",
                                 servers=["nats://127.0.0.1:7100"]))
    document = service_document(query, sandbox)
    assert document["peers"] == {}  # a nats node has no http URL
    assert document["bus"] == {
        "backend": "nats", "servers": ["nats://127.0.0.1:7100"], "stream": "msshop-abc",
        "subjects": "msshop.abc.>", "user": "query",
        "password": service_credential(token, "query")}
