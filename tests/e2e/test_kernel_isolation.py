"""The isolation rule held by the kernel (issue 24): every service process, msshop's own and
a program of your own, starts under a Landlock ruleset, and each door to another service's
database is tried from inside a real service process: msshop's (POST /chaos/trespass with
`how`), a Python program and a Node program run as the query service (tests/programs/
attacker.py and attacker.js, which try every door at start and report what they got).

Skipped, with the reason, where the kernel has no Landlock (or node is missing)."""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from msshop.contracts.topology import BY_NAME, NAMES
from msshop.runtime.platform import landlock
from tests.conftest import ROOT, Sandbox, running_sandbox, sandbox_env, stop_sandbox

pytestmark = pytest.mark.skipif(landlock.abi() < 1, reason="this kernel has no Landlock")

PROGRAMS = ROOT / "tests" / "programs"
EACCES = "Permission denied"


def trespass(sandbox: Sandbox, service: str, into: str, how: str) -> tuple[int, Any]:
    client = sandbox.client()
    return client.exchange(service, "POST", "/chaos/trespass", {"into": into, "how": how},
                           headers={"authorization": f"Bearer {sandbox.state.token}"})


# --- msshop's own services: the guard names the door, the kernel holds behind it -------------

# Who refuses each door in an msshop service: the guard sees sqlite3, Python's open() (the
# symlink is resolved) and os.link; nothing in the process sees libc called through ctypes
# or a child process: the kernel refuses those.
REFUSED_BY = {"sqlite": "guard", "open": "guard", "symlink": "guard", "hardlink": "guard",
              "ctypes": "kernel", "child": "kernel"}


@pytest.mark.parametrize("how", list(REFUSED_BY))
@pytest.mark.parametrize(("service", "into"), [("query", "users"), ("users", "query")])
def test_each_door_from_an_msshop_service_is_refused(shared_sandbox: Sandbox, service: str,
                                                     into: str, how: str) -> None:
    theirs = BY_NAME[into].db_path(shared_sandbox.root)
    own = BY_NAME[service].data_dir(shared_sandbox.root)
    before = sorted(own.iterdir())
    status, answer = trespass(shared_sandbox, service, into, how)
    assert status == 200, answer
    assert (answer["how"], answer["by"], answer["tried"]) == (how, REFUSED_BY[how], str(theirs))
    if REFUSED_BY[how] == "kernel":
        assert answer["refused"].startswith(
            f"the kernel's isolation rule (Landlock) refused {how} of {theirs}: ")
        assert answer["refused"].endswith(EACCES)
    else:
        assert answer["refused"].startswith(f"isolation guard: service '{service}' may open "
                                            f"only its own database")
    assert sorted(own.iterdir()) == before, "no alias, no copy left behind"
    assert answer["refused"] in shared_sandbox.run("logs", service).stdout


def test_every_msshop_service_says_the_kernel_holds_its_rule(shared_sandbox: Sandbox) -> None:
    client = shared_sandbox.client()
    for name in NAMES:
        assert client.request(name, "GET", "/health")["isolation"] == "kernel", name
    status = shared_sandbox.status()
    assert {s["name"]: s["isolation"] for s in status["services"]} == dict.fromkeys(
        NAMES, "kernel")
    text = shared_sandbox.run("status", env_extra={"COLUMNS": "80"}, check=True).stdout
    assert "isolation: held by the kernel (Landlock) for every service" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_a_wrong_door_is_a_422_naming_the_field(shared_sandbox: Sandbox) -> None:
    status, answer = trespass(shared_sandbox, "query", "users", "telepathy")
    assert status == 422 and "$.how" in answer["error"]


# --- a program of your own: nothing of msshop in it, the kernel alone ------------------------

@contextlib.contextmanager
def attacked(tmp_path: Path, command: list[str]) -> Iterator[tuple[Sandbox, dict[str, str]]]:
    """A sandbox in tmp_path/sandbox with `command` as its query service, started from
    tmp_path (so the directory it runs in holds the sandbox), and the doors it tried."""
    root = tmp_path / "sandbox"
    sandbox = Sandbox(root, sandbox_env(root))
    started = sandbox.run("up", "--detach", "--service", f"query={shlex.join(command)}",
                          cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        report = root / "data" / "query" / "report.json"
        deadline = time.monotonic() + 20
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        yield sandbox, json.loads(report.read_text())
    finally:
        stop_sandbox(sandbox)


@pytest.fixture
def python_program(tmp_path: Path) -> list[str]:
    shutil.copy(PROGRAMS / "attacker.py", tmp_path / "attacker.py")
    return [sys.executable, "attacker.py"]  # relative: where `up` runs


def test_every_door_from_a_python_program_is_refused_by_the_kernel(
        tmp_path: Path, python_program: list[str]) -> None:
    with attacked(tmp_path, python_program) as (sandbox, report):
        root = sandbox.root
        assert report.pop("own database") == "allowed: (20000,)", "its own directory works"
        # users' open file through /proc/<pid>/fd: a process outside its domain is not
        # inspected (Landlock's ptrace rule), so not even its links are read
        assert report.pop("another process").startswith(
            f"PermissionError: [Errno 13] {EACCES}: '/proc/"), "users' file through its fds"
        if landlock.abi() >= landlock.SCOPES_FROM_ABI:  # nor can it signal another service
            assert report.pop("signal") == "PermissionError: [Errno 1] Operation not permitted"
        else:
            report.pop("signal")
        unable = "OperationalError: unable to open database file"
        assert report == {
            "sqlite": unable,
            "attach": "OperationalError: unable to open database: "
                      f"{root / 'data' / 'users' / 'users.db'}",
            "open": f"PermissionError: [Errno 13] {EACCES}: "
                    f"'{root / 'data' / 'users' / 'users.db'}'",
            "ctypes": f"PermissionError: [Errno 13] {EACCES}",
            "child": f"OSError: cat: {root / 'data' / 'users' / 'users.db'}: {EACCES}",
            "symlink": unable,
            "hardlink": f"OSError: [Errno 18] Invalid cross-device link: "
                        f"'{root / 'data' / 'users' / 'users.db'}' -> "
                        f"'{root / 'data' / 'query' / 'hard.db'}'",
            "write beside": f"PermissionError: [Errno 13] {EACCES}: "
                            f"'{root / 'data' / 'planted'}'",
            "write in the sandbox": f"PermissionError: [Errno 13] {EACCES}: "
                                    f"'{root / 'planted'}'",
            "write where it runs": f"PermissionError: [Errno 13] {EACCES}: 'planted'",
            "read the state": f"PermissionError: [Errno 13] {EACCES}: "
                              f"'{root / 'state.json'}'",
        }
        assert not (root / "data" / "planted").exists() and not (root / "planted").exists()
        assert not (tmp_path / "planted").exists()
        query = next(s for s in sandbox.status()["services"] if s["name"] == "query")
        assert (query["kind"], query["health"], query["isolation"]) == (
            "executable", "ok", "kernel")
        logged = sandbox.run("logs", "query").stdout
        assert f"door read the state: PermissionError: [Errno 13] {EACCES}" in logged
        with sqlite3.connect(BY_NAME["users"].db_path(root)) as conn:  # untouched, whole
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_every_door_from_a_node_program_is_refused_by_the_kernel(tmp_path: Path) -> None:
    shutil.copy(PROGRAMS / "attacker.js", tmp_path / "attacker.js")
    with attacked(tmp_path, ["node", "attacker.js"]) as (sandbox, report):
        root = sandbox.root
        theirs = root / "data" / "users" / "users.db"
        assert report.pop("own file") == 'allowed: "{}"'
        assert report == {
            "read": f"EACCES: EACCES: permission denied, open '{theirs}'",
            "child": f"Error: cat: {theirs}: {EACCES}",
            "symlink": f"EACCES: EACCES: permission denied, open "
                       f"'{root / 'data' / 'query' / 'alias.db'}'",
            "hardlink": f"EXDEV: EXDEV: cross-device link not permitted, link '{theirs}' -> "
                        f"'{root / 'data' / 'query' / 'hard.db'}'",
            "write beside": f"EACCES: EACCES: permission denied, open "
                            f"'{root / 'data' / 'planted'}'",
            "read the state": f"EACCES: EACCES: permission denied, open "
                              f"'{root / 'state.json'}'",
        }
        logged = sandbox.run("logs", "query").stdout
        assert "door read the state: EACCES: EACCES: permission denied" in logged


# --- where the kernel does not hold it ------------------------------------------------------

def test_turned_off_it_is_said_once_and_the_guard_still_shuts_open(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    sandbox = Sandbox(root, sandbox_env(root, MSSHOP_KERNEL_ISOLATION="0"))
    up = sandbox.run("up", "--detach")
    try:
        assert up.returncode == 0, up.stderr
        said = [line for line in up.stdout.splitlines() if "isolation rule" in line]
        assert said == ["the kernel's isolation rule is turned off ([isolation] kernel = "
                        "false or MSSHOP_KERNEL_ISOLATION=0): the rule is checked only inside "
                        "msshop's Python services"]
        assert sandbox.client().request("query", "GET", "/health")["isolation"] == "process"
        text = sandbox.run("status", check=True).stdout
        assert ("isolation: checked in-process only for bus, users, products, orders, query"
                in text)
        for how in ("open", "symlink", "hardlink"):  # the guard's known hole, shut
            status, answer = trespass(sandbox, "query", "users", how)
            assert (status, answer["by"]) == (200, "guard"), answer
            assert "(another service's data)" in answer["refused"]
        status, answer = trespass(sandbox, "query", "users", "ctypes")  # only the kernel can
        assert status == 500
        assert answer["error"] == ("the isolation rule let this process read "
                                   f"{BY_NAME['users'].db_path(root)} (by ctypes)")
    finally:
        stop_sandbox(sandbox)


# --- the data layout: an old sandbox moved over, nothing lost --------------------------------

def test_an_old_sandbox_is_moved_over_at_up_with_every_row(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    with running_sandbox(root) as sandbox:
        sandbox.run("seed", "--users", "30", "--products", "8", "--orders", "300", "--wait",
                    check=True)
        rows = {s["name"]: s["rows"] for s in sandbox.status()["services"]}
        pids = sandbox.pids()
        sandbox.run("kill", "query", check=True)  # its -wal and -shm stay, as a crash leaves
    assert pids
    for name in NAMES:  # back to the layout before issue 24: data/<service>.db side by side
        spec = BY_NAME[name]
        for file in spec.data_dir(root).iterdir():
            file.rename(root / "data" / file.name)
        spec.data_dir(root).rmdir()
    assert (root / "data" / "query.db-wal").exists()

    with running_sandbox(root) as sandbox:
        assert {s["name"]: s["rows"] for s in sandbox.status()["services"]} == rows
        assert not list((root / "data").glob("*.db*"))
        said = (root / "logs" / "supervisor.log").read_text()
        assert ("moved the databases of bus, users, products, orders, query into a directory "
                "each (data/<service>/<service>.db), with their -wal and -shm files") in said
        verified = sandbox.run("verify", check=True)
        assert verified.returncode == 0


# --- what a program of your own runs on: a version manager's shim, isolation.read ------------

REFERENCE = ROOT / "examples" / "service-d-python" / "service.py"


def test_a_version_managers_shim_starts_under_the_rule(tmp_path: Path) -> None:
    """`python3` on PATH is often pyenv's shim, which runs the manager's own code and the
    Python it chose, all beneath its root: that root is granted, read-only."""
    manager = tmp_path / "manager"
    (manager / "versions" / "d").mkdir(parents=True)
    shutil.copy(REFERENCE, manager / "versions" / "d" / "service.py")
    shim = manager / "shims" / "service-d"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} '
                    '"$(dirname "$0")/../versions/d/service.py"\n')
    shim.chmod(0o755)
    root = tmp_path / "sandbox"
    sandbox = Sandbox(root, sandbox_env(root))
    try:
        up = sandbox.run("up", "--detach", "--service", f"query={shim}")
        assert up.returncode == 0, up.stderr
        query = next(s for s in sandbox.status()["services"] if s["name"] == "query")
        assert (query["health"], query["isolation"]) == ("ok", "kernel")
    finally:
        stop_sandbox(sandbox)


def test_what_else_a_program_runs_on_is_named_in_isolation_read(tmp_path: Path) -> None:
    """A program that reads a folder msshop cannot know of is refused at start, and the
    failed start says where to name it; named, it starts; a wrong name is one line."""
    library = tmp_path / "library"
    library.mkdir()
    shutil.copy(REFERENCE, library / "service.py")
    program = tmp_path / "program" / "main.py"
    program.parent.mkdir()
    program.write_text(f"import runpy\nrunpy.run_path({str(library / 'service.py')!r}, "
                       "run_name='__main__')\n")
    command = f"query={shlex.quote(sys.executable)} {shlex.quote(str(program))}"
    root = tmp_path / "sandbox"
    refused = Sandbox(root, sandbox_env(root)).run("up", "--detach", "--service", command)
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: query failed to start (exited with code 1): ")
    assert f"{EACCES}: '{library / 'service.py'}'" in line
    assert line.endswith(
        " (refused by the kernel's isolation rule: it may read the system, its own files "
        "and msshop's Python; name what else it runs on in [isolation] read or "
        "MSSHOP_ISOLATION_READ); see: msshop logs query")

    for read, says in (
            (tmp_path / "nowhere", "which does not exist; fix the path"),
            (root / "data", "inside the sandbox: a program of your own may read only its "
                            "own directory there; remove it")):
        wrong = Sandbox(root, sandbox_env(root, MSSHOP_ISOLATION_READ=str(read)))
        result = wrong.run("up", "--detach", "--service", command)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"error: isolation.read names {read}, {says} (MSSHOP_ISOLATION_READ or "
            "[isolation] read)"], result.stderr

    sandbox = Sandbox(root, sandbox_env(root, MSSHOP_ISOLATION_READ=str(library)))
    try:
        up = sandbox.run("up", "--detach", "--service", command)
        assert up.returncode == 0, up.stderr
        query = next(s for s in sandbox.status()["services"] if s["name"] == "query")
        assert (query["health"], query["isolation"]) == ("ok", "kernel")
    finally:
        stop_sandbox(sandbox)
