"""HTTP for every service: JSON in and out, errors, credentials (a route's parameters are
params.py; the client side of calls between services is peers.py).

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
from starlette.types import Scope

from msshop.contracts.credentials import digest, matches, presented
from msshop.contracts.limits import MAX_BODY
from msshop.runtime.platform.bodies import out_of_range

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
    """Decode and validate a JSON body; a bad one is a 422 that names the field (and, for
    a value beyond a declared limit, the value and the limit: bodies.py)."""
    body = await read_json(request)
    if not body:
        raise HttpError(422, "request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        said = out_of_range(body, kind, exc) or f"invalid request body: {exc}"
        raise HttpError(422, said) from None
    except msgspec.DecodeError as exc:
        raise HttpError(422, f"request body is not valid JSON: {exc}") from None


OWNER = "owner"  # the caller that showed the sandbox's token: its owner, through the CLI


def authorization(scope: Scope) -> str | None:
    """The request's `authorization` header, read from the scope (no Headers object)."""
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


def _named(services: Mapping[str, str]) -> str:
    names = sorted(set(services.values()))
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def caller(header: str | None, admin: str | None, services: Mapping[str, str],
           what: str, owner_refused: str | None = None) -> str:
    """Who is asking, from its `authorization` header: OWNER (the sandbox's token, whose
    digest is `admin`: the service checks the token without holding it) or the service
    whose credential this is (`services`: credential digest -> name). 401 without a
    credential, 403 with another. `what` is what the credential allows, as the refusal
    names it. `owner_refused`: the token's digest where only services may (the owner is
    told so, not that its token is someone else's)."""
    secret = presented(header)
    if secret is None:
        if admin is None and owner_refused is not None and services:
            raise HttpError(401, f"{what} needs a service's credential (only "
                                 f"{_named(services)} may): send 'authorization: Bearer "
                                 "<its credential>'")
        raise HttpError(401, f"{what} needs the sandbox's token: send 'authorization: Bearer "
                             "<token from state.json>', or use the msshop command")
    if matches(secret, admin):
        return OWNER
    name = services.get(digest(secret))
    if name is None:
        if matches(secret, owner_refused):
            raise HttpError(403, f"{what} refused: that is the sandbox owner's token, and "
                                 "the owner may not: only the sandbox's services may")
        raise HttpError(403, f"{what} refused: that is not this sandbox's token")
    return name
