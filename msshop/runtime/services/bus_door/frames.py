"""What a nats-server sends its client, cut into frames (the NATS text protocol: INFO,
MSG, HMSG, PING, PONG, +OK, -ERR), so that the door can tell a stream delivery from the
rest and hand deliveries out of the ordinary. Client -> server bytes need none of this:
the door passes them as they are.

A delivery of a JetStream consumer is a MSG or HMSG whose reply subject is
`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>` (or,
on newer servers, `$JS.ACK.<domain>.<account hash>.<stream>...<pending>.<token>`): its
position in the log is the stream sequence, and its payload the event's JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

CRLF = b"\r\n"
ACK = b"$JS.ACK."
MAX_CONTROL_LINE = 64 * 1024  # nats-server's own limit on a protocol line is 4 KiB
#: INFO fields that name other addresses of the cluster: a client library would go round
#: the door to them (nats-py does), so the door keeps them from its client
ROUND_THE_DOOR = ("connect_urls", "ws_connect_urls")


class ProtocolError(Exception):
    """The server sent something that is not the NATS protocol (one line, said in the
    door's log; the connection is closed)."""


@dataclass(slots=True)
class Frame:
    """One frame as the server sent it (`raw`, its trailing CRLF included). For MSG and
    HMSG: where its control line's fields are (`args`) and its body (headers, then the
    payload: `header_size` bytes of headers first)."""

    op: bytes
    raw: bytes
    args: list[bytes]
    body_at: int = 0  # where the body starts in `raw`
    header_size: int = 0

    @property
    def payload(self) -> bytes:
        return self.raw[self.body_at + self.header_size:-2]


@dataclass(slots=True)
class Delivery:
    """A stream delivery: its frame, its position, and where the reply's tokens that a
    re-delivery changes are (the consumer's name, the pending count)."""

    frame: Frame
    position: int
    stream: bytes
    tokens: list[bytes]  # the reply subject's
    at: int  # index of the stream's token in `tokens`

    def handed(self, sid: bytes, consumer: bytes, pending: bytes | None) -> bytes:
        """The frame again, to subscription `sid`, as if from `consumer`, with `pending`
        (None: as it was). A delivery handed again goes out with the page it is handed
        in: that fetch's subscription and consumer, so the reader takes it as one of it."""
        tokens = list(self.tokens)
        tokens[self.at + 1] = consumer
        if pending is not None:
            tokens[self.at + 6] = pending
        frame = self.frame
        args = list(frame.args)
        args[1], args[2] = sid, b".".join(tokens)
        return b"%s %s\r\n%s" % (frame.op, b" ".join(args), frame.raw[frame.body_at:])

    @property
    def pending(self) -> int:
        return int(self.tokens[self.at + 6])


def delivery(frame: Frame) -> Delivery | None:
    """The frame as a stream delivery (its reply an ACK subject), or None."""
    if frame.op not in (b"MSG", b"HMSG") or len(frame.args) < (5 if frame.op == b"HMSG"
                                                               else 4):
        return None
    reply = frame.args[2]
    if not reply.startswith(ACK):
        return None
    tokens = reply.split(b".")
    at = 2 if len(tokens) == 9 else 4 if len(tokens) >= 12 else -1
    if at < 0:
        return None
    try:
        position = int(tokens[at + 3])
        int(tokens[at + 6])
    except ValueError:
        return None
    return Delivery(frame, position, tokens[at], tokens, at)


def without_other_servers(frame: Frame) -> bytes:
    """An INFO frame with the cluster's other addresses taken out (the client sees only
    the door); any other frame as it is."""
    if frame.op != b"INFO":
        return frame.raw
    try:
        info = json.loads(frame.raw[5:-2])
    except ValueError as exc:
        raise ProtocolError(f"an INFO that is not JSON: {exc}") from None
    if not isinstance(info, dict) or not any(key in info for key in ROUND_THE_DOOR):
        return frame.raw
    for key in ROUND_THE_DOOR:
        info.pop(key, None)
    return b"INFO " + json.dumps(info, separators=(",", ":")).encode() + CRLF


class FrameReader:
    """Frames out of the bytes as they arrive (a frame may span reads)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer + data if self._buffer else data
        frames: list[Frame] = []
        start = 0
        end = len(buffer)
        while start < end:
            eol = buffer.find(CRLF, start)
            if eol < 0:
                if end - start > MAX_CONTROL_LINE:
                    raise ProtocolError("a protocol line longer than 64 KiB")
                break
            line = buffer[start:eol]
            op, _, rest = line.partition(b" ")
            op = op.upper()
            if op in (b"MSG", b"HMSG"):
                args = rest.split()
                try:
                    header_size = int(args[-2]) if op == b"HMSG" else 0
                    total = int(args[-1])
                except (IndexError, ValueError):
                    raise ProtocolError(f"a {op.decode()} line without its sizes") from None
                frame_end = eol + 2 + total + 2
                if frame_end > end:
                    break  # its body has not all arrived
                frames.append(Frame(op, buffer[start:frame_end], args, eol + 2 - start,
                                    header_size))
                start = frame_end
            else:
                frames.append(Frame(op, buffer[start:eol + 2], []))
                start = eol + 2
        self._buffer = buffer[start:]
        return frames
