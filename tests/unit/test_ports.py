"""A taken port is named with the way out that fits: at `up` other ports may be picked; on
a start or restart the running sandbox keeps the ports it gave out (others hold its URLs)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

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
