"""A taken port is named with the way out that fits: at `up` other ports may be picked; on
a start or restart the running sandbox keeps the ports it gave out (others hold its URLs)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from msshop.contracts.errors import SandboxError
from msshop.runtime.orchestrator.ports import PortBook


@pytest.fixture
def squatter() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_at_up_a_taken_port_points_at_other_ports(squatter: int) -> None:
    book = PortBook("127.0.0.1")
    with pytest.raises(SandboxError) as raised:
        book.listen("users", squatter)
    assert str(raised.value) == (
        f"port {squatter} for users is taken by another program; free it, or pick other "
        "ports with --base-port N or MSSHOP_BASE_PORT=N (0 picks free ones)")
    book.close()


@pytest.mark.parametrize("own", [False, True], ids=["its port", "a port it binds itself"])
def test_on_a_restart_a_taken_port_is_to_be_freed(squatter: int, own: bool) -> None:
    book = PortBook("127.0.0.1")
    port = squatter if not own else 0
    ports = [(squatter, "the door for query's calls")] if own else []
    what = "users (the door for query's calls)" if own else "users"
    with pytest.raises(SandboxError) as raised:
        book.take("users", port, ports)
    assert str(raised.value) == (
        f"port {squatter} for {what} is taken by another program; free it and run the "
        "command again (a running sandbox keeps its ports; msshop down, then up, picks "
        "them again)")
    assert book.fds() == [], "nothing of the start is kept"
    book.close()


def test_the_dashboard_listens_on_loopback_whatever_the_sandbox_s_host(tmp_path: Path
                                                                        ) -> None:
    """A sandbox exposed on another address (sandbox.host) still keeps its dashboard, which
    acts with its owner's powers, to this machine: bound, and bound again on a restart, to
    the loopback address of the host's family; its health asked there too."""
    from msshop.contracts.config import Settings, defaults
    from msshop.contracts.topology import DASHBOARD, PARTS
    from msshop.runtime.orchestrator.forked_service import ForkedServiceKind

    binds: list[tuple[str, int, str]] = []

    def bind(host: str, port: int, service: str) -> socket.socket:
        binds.append((host, port, service))
        return cast(socket.socket, FakeSocket(port or 40000 + len(binds)))

    asked: list[str] = []

    def probe(host: str, port: int, timeout: float) -> None:
        asked.append(host)

    for host, loopback in (("0.0.0.0", "127.0.0.1"), ("::", "::1")):
        binds.clear()
        settings = Settings.from_values({**defaults(), "sandbox.dir": tmp_path / "sandbox",
                                         "sandbox.host": host, "sandbox.base_port": 0})
        book = PortBook(host, bind)
        kind = ForkedServiceKind(settings, probe=probe)
        ui = kind.reserve(DASHBOARD, book)[0]
        query = kind.reserve(PARTS["query"], book)[0]
        assert [b[0] for b in binds] == [loopback, host]
        shown = f"[{loopback}]" if ":" in loopback else loopback
        assert ui.url == f"http://{shown}:{ui.port}" and query.url.startswith(
            f"http://{'[' + host + ']' if ':' in host else host}:")
        book.listening.clear()  # started: a restart binds it again
        book.take("ui", ui.port, [])
        assert binds[-1] == (loopback, ui.port, "ui")
        kind.health(ui, host, 1.0)
        assert asked[-1] == loopback


class FakeSocket:
    def __init__(self, port: int) -> None:
        self.port = port

    def getsockname(self) -> tuple[str, int]:
        return ("", self.port)

    def close(self) -> None:
        pass
