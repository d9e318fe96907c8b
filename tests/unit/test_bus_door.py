"""The bus's door in process: what the nats-server sends cut into frames however it
arrives, a stream delivery told from the rest, a page handed as the log bus hands its
pages (links.py's Misdelivery) and noted in the journal, INFO without the cluster's other
addresses; and what a delivery costs through the door (printed)."""

from __future__ import annotations

import json
import random
import time

import pytest

from msshop.contracts.status import link_fault
from msshop.runtime.platform.journal import DeliveryJournals
from msshop.runtime.platform.links import Doors
from msshop.runtime.services.bus_door.frames import (
    Delivery,
    FrameReader,
    ProtocolError,
    delivery,
    without_other_servers,
)
from msshop.runtime.services.bus_door.proxy import Nodes, ReaderDoor

STREAM = "msshop-abc"


def event(position: int, aggregate: int = 1, version: int = 1,
          kind: str = "OrderPlaced") -> bytes:
    return json.dumps({"id": f"e{position}", "type": kind, "source": "orders",
                       "aggregate_type": "order" if kind == "OrderPlaced" else "product",
                       "aggregate_id": aggregate, "aggregate_version": version,
                       "data": {"id": aggregate}}).encode()


def hmsg(position: int, pending: int = 0, sid: bytes = b"1", consumer: bytes = b"c1",
         payload: bytes | None = None, long_form: bool = False) -> bytes:
    body = payload if payload is not None else event(position, aggregate=position)
    headers = b"NATS/1.0\r\nNats-Msg-Id: orders.e1\r\n\r\n"
    reply = (f"$JS.ACK.{STREAM}.".encode() + consumer
             + f".1.{position}.{position}.1796435020000000000.{pending}".encode())
    if long_form:  # newer servers: <domain>.<account hash> after ACK, a token more at the end
        reply = (b"$JS.ACK._.acchash." + STREAM.encode() + b"." + consumer
                 + f".1.{position}.{position}.1796435020000000000.{pending}.xyz".encode())
    return (b"HMSG msshop.abc.orders.OrderPlaced %s %s %d %d\r\n%s%s\r\n"
            % (sid, reply, len(headers), len(headers) + len(body), headers, body))


def test_frames_come_whole_however_the_bytes_arrive() -> None:
    stream = (b"INFO {\"server_id\":\"x\"}\r\nPING\r\n" + hmsg(7, pending=1)
              + b"MSG _INBOX.query.a.api.1 1 5\r\nhello\r\n+OK\r\n" + hmsg(8))
    whole = [frame.raw for frame in FrameReader().feed(stream)]
    assert b"".join(whole) == stream and len(whole) == 6
    for size in (1, 2, 7, 64):  # byte by byte, and in every other cut
        reader = FrameReader()
        cut = [frame.raw for start in range(0, len(stream), size)
               for frame in reader.feed(stream[start:start + size])]
        assert cut == whole, size


def test_a_delivery_is_told_by_its_ack_subject_and_gives_its_position() -> None:
    frames = FrameReader().feed(hmsg(42, pending=3) + hmsg(43, long_form=True)
                                + b"MSG _INBOX.query.a.api.1 1 2\r\n{}\r\n"
                                + b"HMSG _INBOX.query.a.fetch.1 1 32 32\r\n"
                                + b"NATS/1.0 408 Request Timeout\r\n\r\n\r\n")
    found = [delivery(frame) for frame in frames]
    assert [d.position if d else None for d in found] == [42, 43, None, None]
    first = found[0]
    assert first is not None and first.pending == 3 and first.stream == STREAM.encode()
    assert first.frame.payload == event(42, aggregate=42)


def test_info_loses_the_other_nodes_addresses_and_garbage_is_refused() -> None:
    (info,) = FrameReader().feed(b'INFO {"port":1,"connect_urls":["10.0.0.2:4222"]}\r\n')
    assert json.loads(without_other_servers(info)[5:]) == {"port": 1}
    with pytest.raises(ProtocolError):
        FrameReader().feed(b"MSG a 1 not-a-size\r\n")


def door(fault: dict[str, float]) -> tuple[ReaderDoor, DeliveryJournals]:
    doors = Doors("bus-door", {"query": 1})
    journals = DeliveryJournals()
    reader = ReaderDoor("query", 1, doors, Nodes(["nats://127.0.0.1:1"]), journals,
                        random.Random(4))
    doors.set("query", link_fault(**fault))
    return reader, journals


def deliveries(data: bytes) -> list[Delivery]:
    found = [delivery(frame) for frame in FrameReader().feed(data)]
    return [d for d in found if d is not None]


def page_of(*positions: int, consumer: bytes = b"c1", sid: bytes = b"1") -> list[Delivery]:
    return deliveries(b"".join(
        hmsg(p, pending=positions[-1] - p, consumer=consumer, sid=sid) for p in positions))


def handed(reader: ReaderDoor, page: list[Delivery]) -> list[tuple[int, bytes, bytes, int]]:
    """(position, sid, consumer, pending) of each delivery the reader is handed."""
    out = []
    for frame in FrameReader().feed(reader.hand(page, reader.fault())):
        found = delivery(frame)
        assert found is not None
        out.append((found.position, frame.args[1], found.tokens[found.at + 1], found.pending))
    return out


def test_duplicates_come_in_a_later_page_as_that_fetchs_and_are_journaled() -> None:
    reader, journals = door({"duplicate_rate": 1.0})
    first = handed(reader, page_of(1, 2, 3))
    assert sorted(p for p, *_ in first) == [1, 2, 3] and first[-1][0] == 3
    # the reader made a new consumer (and subscription) meanwhile: the ones handed again
    # come as that fetch's, and none but the last says the stream is done (pending 0)
    second = handed(reader, page_of(4, 5, consumer=b"c2", sid=b"9"))
    assert sorted(p for p, *_ in second) == [1, 2, 3, 4, 5] and second[-1][0] == 5
    assert {(sid, consumer) for _, sid, consumer, _ in second} == {(b"9", b"c2")}
    assert all(pending >= 1 for *_, pending in second[:-1])
    entries = journals.journal("query", 10)["entries"]
    assert {(e["position"], e["fault"], e["type"]) for e in entries} == {
        (1, "duplicate", "OrderPlaced"), (2, "duplicate", "OrderPlaced"),
        (3, "duplicate", "OrderPlaced")}


def test_a_reorder_hands_one_aggregates_updates_newest_first_the_last_kept_last() -> None:
    reader, journals = door({"reorder_rate": 1.0})
    got = handed(reader, deliveries(b"".join(
        hmsg(p, pending=4 - p, payload=event(p, aggregate=7, version=p, kind="ProductUpdated"))
        for p in (1, 2, 3)) + hmsg(4, payload=event(4, aggregate=9))))
    assert [p for p, *_ in got] == [3, 2, 1, 4]
    assert [e["aggregate_version"] for e in journals.journal("query", 10)["entries"]] \
        == [3, 2, 1]  # each of the aggregate's updates, as handed


def test_clearing_the_fault_forgets_what_was_held() -> None:
    reader, _ = door({"redeliver_rate": 1.0})
    handed(reader, page_of(1, 2))
    reader.doors.set("query", None)
    assert [p for p, *_ in handed(reader, page_of(3))] == [3]


def test_what_a_delivery_costs_through_the_door() -> None:
    """In process: the bytes of 10,000 deliveries cut into frames and told apart (every
    delivery's path with no fault: the door adds this to a read), and with a duplicate
    fault paged and handed again. Printed; bounded loosely, for a loaded machine."""
    burst = b"".join(hmsg(p, pending=10_000 - p) for p in range(1, 10_001))
    chunks = [burst[i:i + 256 * 1024] for i in range(0, len(burst), 256 * 1024)]
    started = time.perf_counter()
    reader = FrameReader()
    passed = 0
    for chunk in chunks:
        frames = reader.feed(chunk)
        passed += len(b"".join(without_other_servers(frame) for frame in frames))
    plain_us = (time.perf_counter() - started) / 10_000 * 1e6
    assert passed == len(burst)
    faulty, _ = door({"duplicate_rate": 0.3})
    started = time.perf_counter()
    reader = FrameReader()
    for chunk in chunks:
        page = [d for frame in reader.feed(chunk) if (d := delivery(frame)) is not None]
        faulty.hand(page, faulty.fault())
    faulty_us = (time.perf_counter() - started) / 10_000 * 1e6
    print(f"\nthe door: {plain_us:.2f} us a delivery with no fault, {faulty_us:.2f} us "
          "with duplicates (paged, journaled, re-emitted)")
    assert plain_us < 50 and faulty_us < 500
