"""HTTP for every service: JSON in and out, errors, parameters (the client side of calls
between services is peers.py).

Errors are always JSON: {"error": "<one line>", "status": N, "service": "<who answered>"}
and, when a dependency failed, "dependency": "<which>". A person reading only the message
should know what went wrong and what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from msshop.contracts.credentials import digest, matches, presented
from msshop.contracts.limits import MAX_BATCH, MAX_BODY, MAX_ID

log = logging.getLogger("msshop.http")
T = TypeVar("T")


class HttpError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


#: control characters (C0, DEL, C1, the Unicode line and paragraph separators), escaped
_ESCAPES = {code: chr(code).encode("unicode_escape").decode("ascii")
            for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}


def one_line(message: str) -> str:
    """An error message as one line: control characters (a newline in an id, a name, a path
    the caller sent and the message quotes) escaped as Python writes them."""
    return message.translate(_ESCAPES)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


async def read_json(request: Request) -> bytes:
    """The body of a write, refused unless it is JSON and at most MAX_BODY bytes.

    Only JSON: a web page can make a browser send a form or text/plain to 127.0.0.1 without
    asking first, but not application/json (that needs a CORS preflight nobody answers)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/json" and not (kind.startswith("application/")
                                            and kind.endswith("+json")):
        raise HttpError(415, f"send JSON with content-type application/json, not "
                             f"{kind or 'no content-type'}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise HttpError(413, f"request body of {declared} bytes is over the limit of "
                             f"{MAX_BODY:,} bytes; send less at a time")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HttpError(413, f"request body is over the limit of {MAX_BODY:,} bytes; "
                                 "send less at a time")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, kind: type[T]) -> T:
    """Decode and validate a JSON body; a bad one is a 422 that names the field."""
    body = await read_json(request)
    if not body:
        raise HttpError(422, "request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise HttpError(422, f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise HttpError(422, f"request body is not valid JSON: {exc}") from None


OWNER = "owner"  # the caller that showed the sandbox's token: its owner, through the CLI


def caller(request: Request, admin: str | None, services: Mapping[str, str], what: str) -> str:
    """Who is asking: OWNER (the sandbox's token) or the service whose credential this is
    (`services`: credential digest -> name). 401 without a credential, 403 with another."""
    secret = presented(request.headers.get("authorization"))
    if secret is None:
        raise HttpError(401, f"{what} needs the sandbox's token: send 'authorization: Bearer "
                             "<token from state.json>', or use the msshop command")
    if matches(secret, admin):
        return OWNER
    name = services.get(digest(secret))
    if name is None:
        raise HttpError(403, f"{what} refused: that is not this sandbox's token")
    return name


def require_token(request: Request, admin: str | None, what: str) -> None:
    """Only callers that hold the sandbox's token (in its state file, mode 0600) may `what`.
    `admin` is the token's digest: the service can check the token without holding it."""
    caller(request, admin, {}, what)


def id_param(request: Request, name: str) -> int:
    """A positive integer from the path, e.g. /users/{user_id}."""
    raw = request.path_params[name]
    return _positive_int(raw, f"{name} '{raw}'")


def query_value(request: Request, name: str) -> str | None:
    """One query parameter. Plain `a=b&c=d` strings (all msshop sends) are split here, once
    per request (kept in the scope); only escaped ones pay for Starlette's full parse. This
    is on every request's path."""
    scope = request.scope
    values: dict[str, str] | None = scope.get("msshop.query")
    if values is None:
        raw: bytes = scope["query_string"]
        if b"%" in raw or b"+" in raw:
            values = dict(request.query_params)
        else:
            values = {}
            for pair in raw.split(b"&"):
                key, _, value = pair.partition(b"=")
                values[key.decode("latin-1")] = value.decode("latin-1")  # last wins
        scope["msshop.query"] = values
    return values.get(name)


def int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = query_value(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise HttpError(422, f"query parameter {name}={raw!r} must be an integer "
                             f"from {low} to {high}")
    return value


def ids_query(request: Request, name: str = "ids") -> list[int] | None:
    """`?ids=1,2,3` as a list of distinct ids in the given order, or None when absent."""
    raw = query_value(request, name)
    if raw is None:
        return None
    parts = [p for p in raw.split(",") if p.strip()]
    if len(parts) > MAX_BATCH:
        raise HttpError(422, f"query parameter {name} has {len(parts)} ids; "
                             f"ask for at most {MAX_BATCH} at a time")
    ids = [_positive_int(p.strip(), f"{name} entry '{p.strip()}'") for p in parts]
    return list(dict.fromkeys(ids))


def _positive_int(raw: str, what: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(422, f"{what} is not an id: ids are positive integers") from None
    if value < 1:
        raise HttpError(422, f"{what} is not an id: ids are positive integers")
    if value > MAX_ID:
        raise HttpError(422, f"{what} is not an id: ids are at most {MAX_ID}")
    return value
