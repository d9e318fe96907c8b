"""Shared fixtures: real sandboxes (real processes, free 127.0.0.1 ports, files in tmp_path)
and a runner for the real `msshop` command."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from msshop.contracts import events
from msshop.contracts.credentials import bearer, service_credential
from msshop.instruments.client import ShopClient
from msshop.runtime.orchestrator.state import SandboxPaths, State, pid_alive, read_state

ROOT = Path(__file__).resolve().parent.parent


def sandbox_env(sandbox: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSSHOP_")}
    env.update({"MSSHOP_SANDBOX": str(sandbox), "MSSHOP_BASE_PORT": "0",
                "NO_COLOR": "1", "COLUMNS": "200", **extra})
    return env


def msshop(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60,
           check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a person would."""
    result = subprocess.run([sys.executable, "-m", "msshop", *args], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"msshop {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Sandbox:
    root: Path
    env: dict[str, str]

    @property
    def state(self) -> State:
        state = read_state(SandboxPaths(self.root))
        assert state is not None, "no state file: the sandbox is not running"
        return state

    def client(self) -> ShopClient:
        return ShopClient(self.state, timeout=10)

    def run(self, *args: str, env_extra: dict[str, str] | None = None,
            **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return msshop(*args, env={**self.env, **(env_extra or {})}, **kwargs)

    @contextlib.contextmanager
    def background(self, *args: str) -> Iterator[subprocess.Popen[str]]:
        """`msshop ARGS` running beside the test, as in a second terminal; ended if the
        test leaves it running."""
        process = subprocess.Popen([sys.executable, "-m", "msshop", *args], env=self.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.run("status", "--json").stdout)
        return result

    def as_service(self, name: str) -> dict[str, str]:
        """The header that proves to the bus that the caller is `name` (the test plays a
        writing service, which only the sandbox's owner can: the credential derives from
        the token in state.json)."""
        return bearer(service_credential(self.state.token, name))

    @property
    def backend(self) -> str:
        return self.state.bus.backend

    def bus_events(self) -> list[events.Event]:
        """Every event on the bus, in order, read through the Bus interface (so the same
        on every backend)."""
        from msshop.instruments import event_pager

        return [event for _, event in
                event_pager.read(self.client().bus(), 0, 10_000_000, follow=False)]

    def pids(self) -> list[int]:
        state = read_state(SandboxPaths(self.root))
        if state is None:
            return []
        return [state.supervisor_pid] + [s.pid for s in state.services.values() if s.pid]


def one_purchase(sandbox: Sandbox, title: str = "Hat", price: float = 10) -> None:
    """User 1 buys product 1 (titled `title`), and the read model has it."""
    from msshop.instruments.checking import caught_up

    client = sandbox.client()
    client.request("users", "POST", "/users", {"email": "buyer@example.com", "name": "Buyer"})
    client.request("products", "POST", "/products", {"title": title, "price": price,
                                                   "stock": 1000})
    client.request("orders", "POST", "/orders", {"user_id": 1, "product_id": 1})
    caught_up(client, timeout=10)


def stock_up(sandbox: Sandbox, users: range, products: range, amount: int = 1_000_000
             ) -> None:
    """Give `users` credit and `products` stock for a test's many purchases: a purchase
    takes both (issue 26), and a seeded shop has left only what it was seeded with."""
    client = sandbox.client()
    owner = bearer(sandbox.state.token)  # only the sandbox's owner gives stock and credit
    client.request("users", "POST", "/users/credit", {
        "users": [{"id": i, "amount": float(amount)} for i in users]}, owner)
    client.request("products", "POST", "/products/stock", {
        "products": [{"id": i, "quantity": amount} for i in products]}, owner)


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    """Wait until none of `pids` runs; return the ones still running at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive:
            return []
        time.sleep(0.02)
    return [pid for pid in pids if pid_alive(pid)]


def start_sandbox(root: Path, **env: str) -> Sandbox:
    sandbox = Sandbox(root, sandbox_env(root, **env))
    sandbox.run("up", "--detach", check=True)
    return sandbox


def stop_sandbox(sandbox: Sandbox) -> None:
    pids = sandbox.pids()
    sandbox.run("down")
    for pid in wait_gone(pids, timeout=10):  # never leave a process behind a failed test
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_sandbox(root: Path, **env: str) -> Iterator[Sandbox]:
    """A sandbox up (detached) for the block, then down with every process of it gone."""
    sandbox = start_sandbox(root, **env)
    try:
        yield sandbox
    finally:
        stop_sandbox(sandbox)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A fresh running sandbox of its own, for tests that change it."""
    with running_sandbox(tmp_path / "sandbox") as running:
        yield running


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One running sandbox for a module's tests that only add data and read."""
    with running_sandbox(tmp_path_factory.mktemp("shared") / "sandbox") as running:
        yield running


@pytest.fixture(scope="module")
def shared_nats_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The same on NATS JetStream: a real nats-server the sandbox starts."""
    with running_sandbox(tmp_path_factory.mktemp("shared-nats") / "sandbox",
                         MSSHOP_BUS_BACKEND="nats") as running:
        yield running


BACKENDS = ["log", "nats"]


@pytest.fixture(params=BACKENDS)
def any_sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sandbox]:
    """A fresh running sandbox of its own, once on each bus backend: the replicated
    strategy's promises hold on msshop's log and on NATS JetStream alike."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND=request.param) as running:
        yield running
