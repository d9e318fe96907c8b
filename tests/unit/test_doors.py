"""A service's doors (the ports it listens on for the calls of a program of your own),
bound as it starts (runner.doors): each on the service's own address; one that cannot be
bound ends the start with one line naming the door and the fix."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from msshop.runtime.platform.context import ServiceContext
from msshop.runtime.platform.runner import doors


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_each_door_is_bound_on_the_services_own_address(tmp_path: Path) -> None:
    ports = {"query": free_port(), "orders": free_port()}
    context = ServiceContext("users", tmp_path / "users.db", door_ports=ports)
    with socket.socket() as own:
        own.bind(("127.0.0.1", 0))
        bound = doors(context, own)
        try:
            assert [s.getsockname() for s in bound] == [("127.0.0.1", p)
                                                        for p in ports.values()]
        finally:
            for sock in bound:
                sock.close()


def test_a_door_that_cannot_be_bound_ends_the_start_in_one_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as squatter, socket.socket() as own:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        own.bind(("127.0.0.1", 0))
        context = ServiceContext("users", tmp_path / "users.db", door_ports={"query": port})
        with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as ended:
            doors(context, own)
    assert ended.value.code == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"users could not start: cannot listen on its door for query's calls, port {port}: "
        "Address already in use; free it, then: msshop start users"]
