"""A purchase whose answer is lost on a kept connection is sent again, and placed once.

runtime/http1.py sends a request again when a connection it kept turns out closed before
any answer came (the server closed it while idle: the usual case, and harmless). But the
server may have had the request: here a proxy between the client and the real orders
service passes the purchase on, lets orders place it, and then drops the connection
instead of answering. The client's request id (made by ShopClient.buy when none is given)
makes the second sending find the first order."""

from __future__ import annotations

import dataclasses
import socket
import sqlite3
import threading
from collections.abc import Iterator

import pytest

from msshop.contracts.topology import BY_NAME
from msshop.instruments.client import ShopClient
from tests.conftest import Sandbox, one_purchase


def read_message(sock: socket.socket, pending: bytearray) -> bytes | None:
    """One HTTP/1.1 message (its head and a Content-Length body), or None at EOF."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        pending += chunk
    head, _, _ = bytes(pending).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    size = len(head) + 4 + length
    while len(pending) < size:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        pending += chunk
    message = bytes(pending[:size])
    del pending[:size]
    return message


@pytest.fixture
def answer_dropping_proxy(sandbox: Sandbox) -> Iterator[tuple[int, list[bytes]]]:
    """A port in front of orders that drops the answer to the first POST it passes on
    (after orders has it); and the requests it passed on."""
    orders = sandbox.state.services["orders"].port
    listener = socket.create_server(("127.0.0.1", 0))
    passed: list[bytes] = []
    dropped = threading.Event()

    def serve(client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", orders), timeout=10) as upstream:
            from_client, from_upstream = bytearray(), bytearray()
            while (request := read_message(client, from_client)) is not None:
                upstream.sendall(request)
                passed.append(request)
                answer = read_message(upstream, from_upstream)
                if answer is None:
                    return
                if request.startswith(b"POST") and not dropped.is_set():
                    dropped.set()
                    return  # orders placed it; the client gets no answer
                client.sendall(answer)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1], passed
    finally:
        listener.close()


def test_a_purchase_whose_answer_is_lost_is_placed_once(
        sandbox: Sandbox, answer_dropping_proxy: tuple[int, list[bytes]]) -> None:
    one_purchase(sandbox)  # user 1, product 1, and one order already
    port, passed = answer_dropping_proxy
    state = sandbox.state
    orders = dataclasses.replace(state.services["orders"], port=port)
    client = ShopClient(dataclasses.replace(state, services={**state.services,
                                                             "orders": orders}))
    try:
        client.request("orders", "GET", "/health")  # the connection is now a kept one
        order, created = client.buy(1, 1)
    finally:
        client.close()
    posts = [request for request in passed if request.startswith(b"POST")]
    assert len(posts) == 2, "sent again after the lost answer"
    assert created is False, "the second sending found the order the first one placed"
    with sqlite3.connect(BY_NAME["orders"].db_path(sandbox.root)) as conn:
        placed = conn.execute("SELECT id, request_id FROM orders ORDER BY id").fetchall()
    assert len(placed) == 2 and placed[-1] == (order["id"], order["request_id"]), placed
