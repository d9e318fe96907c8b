"""OpenAPI 3.1 descriptions of the services' HTTP APIs, generated from what the routes declare.

A service declares each route once, as an `Endpoint`: method, path, parameters (with their
types and ranges), the request body's type, the answers' types by status, a summary, who
may call it, and whether it is traced and subject to chaos. Everything reads that one
declaration: the router converts the parameters and checks the credential before the
handler runs (routing.py, params.py), the middlewares read the flags from the matched
route, and `document()` describes the operation, with schemas generated from the types
themselves (msgspec.json.schema_components): request bodies are msgspec Structs, answers
TypedDicts (msshop.contracts), parameters annotated types such as
`Annotated[int, Meta(ge=1, le=MAX_ID)]`. No JSON Schema is written by hand: a new field,
type or route is in the document as soon as it is in the code, and the document cannot
state a parameter's limit that the route does not enforce.

Limits that a service checks itself, with its own message (after trimming spaces, say), are
declared with `documented(...)` and the same constants (contracts/limits.py): the schema
states them (`extra_json_schema`), the decoder does not enforce them, and the answer keeps
the service's message. tests/e2e/test_fuzz.py holds the services to their documents.

Nothing here runs per request: the app builds its document once, at the first
GET /openapi.json.
"""

from __future__ import annotations

import contextlib
import re
import typing
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Literal, NotRequired, Required, Union

import msgspec
from starlette.responses import Response

from msshop.contracts.limits import MAX_BATCH, MAX_BODY, MAX_ID
from msshop.contracts.shop import Error

#: a route's handler: the request, then each declared parameter by name, typed (and
#: `caller`, who showed the credential, if it asks)
Handler = Callable[..., Awaitable[Response]]
Auth = Literal["owner", "services", "owner or services"]
#: an answer: its type and what it means, or (a plain string) an Error and what it means
Answer = tuple[Any, str] | str

Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "owner": {
        "type": "http", "scheme": "bearer",
        "description": "The sandbox's token, in its state.json (mode 0600): its owner's. "
                       "`msshop` sends it for the owner's requests. 401 without, 403 with "
                       "another.",
    },
    "services": {
        "type": "http", "scheme": "bearer",
        "description": "A service's own credential, derived from the sandbox's token by the "
                       "supervisor and handed to that service alone. 401 without, 403 with "
                       "another, or from a service that may not do this.",
    },
}
SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    "owner": [{"owner": []}],
    "services": [{"services": []}],
    "owner or services": [{"owner": []}, {"services": []}],
}


def documented(description: str = "", **limits: Any) -> msgspec.Meta:
    """The Meta of a value whose limits the service checks itself, with its own message:
    `limits` (JSON Schema keywords: minLength, maxLength, minimum, maximum, pattern) go into
    the schema; the decoder does not enforce them."""
    return msgspec.Meta(description=description or None, extra_json_schema=limits or None)


class Param:
    """A path or query parameter: `type` is what the handler receives and the document
    states (params.py says which types convert); `default`, what a handler receives when
    it is left out; `missing`, the answer when a required one is left out."""

    __slots__ = ("default", "description", "missing", "name", "required", "type", "where")

    def __init__(self, name: str, type: Any, description: str,
                 where: Literal["path", "query"] = "query", required: bool = False,
                 default: int | float | str | None = None, missing: str = "") -> None:
        self.name = name
        self.type = type
        self.description = description
        self.where = where
        self.required = required
        self.default = default
        self.missing = missing


def path_id(name: str, what: str) -> Param:
    return Param(name, Id, f"the {what}'s id: a positive integer, at most {MAX_ID}", "path",
                 required=True)


IdList = Annotated[str, documented(pattern=r"^([0-9]{1,19}(,[0-9]{1,19})*)?$")]


#: `?types=OrderPlaced,StockTaken`: event types of the catalogue (contracts/events.py)
EventTypeList = Annotated[str, documented(pattern=r"^[A-Za-z]+(,[A-Za-z]+)*$")]


def id_list(what: str, missing: str = "") -> Param:
    """`?ids=1,2,3`: the handler receives a list of distinct ids (None if left out, or
    with `missing`, required: the answer when it is left out)."""
    return Param("ids", IdList, f"comma-separated {what} ids, at most {MAX_BATCH:,}",
                 required=bool(missing), missing=missing)


class Endpoint:
    """One route of a service, declared once: the route it serves and the operation that
    describes it. `answers` are by status; the platform adds the ones every route of the kind
    has (413/415/422 for a body, 422 for parameters, 404 for a path parameter, 401/403 for
    a credential, 503 for chaos). `auth`: the credential the router checks before the
    handler runs; `action`, what it allows, as a refusal names it ("reading spans needs the
    sandbox's token"). `chaos`: POST /chaos applies to it (all but /health, /spans, /chaos
    and /openapi.json); `traced`: each request gets a server span (all but /health, /spans
    and /openapi.json). A plain class, not a dataclass: a dataclass costs a millisecond to
    define, on the way to the bus's start."""

    __slots__ = ("action", "answers", "auth", "body", "chaos", "handler", "method", "params",
                 "path", "summary", "traced")

    def __init__(self, method: str, path: str, handler: Handler, summary: str,
                 answers: Mapping[int, Answer], body: Any = None, params: Sequence[Param] = (),
                 auth: Auth | None = None, action: str = "", chaos: bool = True,
                 traced: bool = True) -> None:
        self.method = method
        self.path = path
        self.handler = handler
        self.summary = summary
        self.answers = answers
        self.body = body
        self.params = params
        self.auth = auth
        self.action = action
        self.chaos = chaos
        self.traced = traced


def responses(endpoint: Endpoint) -> dict[int, tuple[Any, str]]:
    """Every answer the endpoint can give, with the ones all routes of its kind share."""
    answers = {status: (Error, answer) if isinstance(answer, str) else answer
               for status, answer in endpoint.answers.items()}

    def add(status: int, description: str) -> None:
        if status not in answers:
            answers[status] = (Error, description)

    if endpoint.body is not None:
        add(413, f"The request body is over the limit of {MAX_BODY:,} bytes (MAX_BODY): "
                 "send less at a time.")
        add(415, "The request body is not sent as JSON (content-type application/json or "
                 "application/*+json).")
    if endpoint.body is not None or endpoint.params:
        add(422, "A parameter or the body is invalid; the message names it and the limit.")
    if any(param.where == "path" for param in endpoint.params):
        add(404, "No such route: a path parameter with a '/' in it.")
    if endpoint.auth is not None:
        add(401, "No credential: send `authorization: Bearer …`.")
        add(403, "Refused: another credential, or a caller that may not do this.")
    if endpoint.chaos:
        chaos = "Failed on purpose: POST /chaos set an error rate for this service."
        kind, said = answers.get(503, (Error, ""))
        answers[503] = (kind, f"{said.rstrip('.')}. Or: {chaos}" if said else chaos)
    return dict(sorted(answers.items()))


def document(service: str, endpoints: Sequence[Endpoint], description: str = "",
             version: str = "0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of a service's endpoints."""
    slots: list[Any] = []  # every type to describe, in order; the schemas come back in order

    def slot(kind: Any) -> int:
        slots.append(kind)
        return len(slots) - 1

    planned = []
    for endpoint in endpoints:
        params = [(p, slot(p.type)) for p in endpoint.params]
        body = None if endpoint.body is None else slot(endpoint.body)
        answers = {status: (slot(kind), said)
                   for status, (kind, said) in responses(endpoint).items()}
        planned.append((endpoint, params, body, answers))

    schemas = _schemas(slots)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint, params, body, answers in planned:
        operation: dict[str, Any] = {
            "operationId": endpoint.method.lower() + "_" + "_".join(
                re.findall(r"[A-Za-z0-9]+", endpoint.path)),
            "summary": endpoint.summary,
        }
        doc = endpoint.handler.__doc__
        if doc:
            operation["description"] = " ".join(doc.split())
        if params:
            operation["parameters"] = [_parameter(p, schemas[i]) for p, i in params]
        if body is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": schemas[body]}}}
        operation["responses"] = {
            str(status): {"description": said,
                          "content": {"application/json": {"schema": schemas[i]}}}
            for status, (i, said) in answers.items()}
        if endpoint.auth is not None:
            operation["security"] = SECURITY[endpoint.auth]
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": f"msshop {service}", "version": version,
                 "description": description.strip()},
        "paths": paths,
        "components": {"schemas": schemas.components, "securitySchemes": SECURITY_SCHEMES},
    }


def _parameter(param: Param, schema: dict[str, Any]) -> dict[str, Any]:
    if param.default is not None:
        schema = {**schema, "default": param.default}
    return {"name": param.name, "in": param.where, "required": param.required,
            "description": param.description, "schema": schema}


# --- schemas -------------------------------------------------------------------------------


class _Schemas(list[dict[str, Any]]):
    components: dict[str, Any]


REF = "#/components/schemas/{name}"


def _schemas(kinds: list[Any]) -> _Schemas:
    """JSON Schemas of `kinds`, in order, and the components they refer to.

    msgspec describes every type it can decode, and a union of two TypedDicts it cannot
    decode (it could not tell them apart); a document can say "one of these". Such a union
    is described through a stand-in (`_OneOf`), and its members as types of their own."""
    one_ofs: list[tuple[Any, ...]] = []
    cache: dict[Any, Any] = {}
    documentable = [_documentable(kind, cache, one_ofs) for kind in kinds]
    members = [member for members in one_ofs for member in members]

    def hook(kind: type) -> dict[str, Any]:
        if issubclass(kind, _OneOf):
            return {_ONE_OF: kind.index}
        raise NotImplementedError(f"{kind!r} cannot be described")

    described, components = msgspec.json.schema_components(
        [*documentable, *members], schema_hook=hook, ref_template=REF)
    alternatives: list[list[dict[str, Any]]] = []
    rest = iter(described[len(documentable):])
    for group in one_ofs:
        alternatives.append([next(rest) for _ in group])

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            node = {key: resolve(value) for key, value in node.items()}
            if _ONE_OF in node:
                node["anyOf"] = alternatives[node.pop(_ONE_OF)]
            return node
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    out = _Schemas(resolve(schema) for schema in described[:len(documentable)])
    out.components = resolve(components)
    return out


_ONE_OF = "x-msshop-one-of"


class _OneOf:
    """Stands in for a union msgspec cannot describe; `index` is its place in `one_ofs`."""

    index = 0


def _documentable(kind: Any, cache: dict[Any, Any], one_ofs: list[tuple[Any, ...]]) -> Any:
    """`kind`, with every union of more than one TypedDict replaced by a _OneOf (TypedDicts
    that hold one are copied, with the stand-in in its place)."""
    try:
        return cache[kind]
    except (KeyError, TypeError):  # TypeError: an unhashable Meta argument; not cached
        pass
    result = kind
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Annotated:
        inner = _documentable(args[0], cache, one_ofs)
        if inner is not args[0]:
            result = Annotated[(inner, *kind.__metadata__)]
    elif origin is Literal and any(isinstance(a, Enum) for a in args):
        # a choice among a StrEnum's members (params.py hands the member): its values
        result = Literal[tuple(a.value if isinstance(a, Enum) else a for a in args)]
    elif origin in (Union, UnionType):
        members = tuple(_documentable(a, cache, one_ofs) for a in args)
        if sum(typing.is_typeddict(m) for m in members) > 1:
            one_ofs.append(members)
            result = type("OneOf", (_OneOf,), {"index": len(one_ofs) - 1})
        elif any(m is not a for m, a in zip(members, args, strict=True)):
            result = Union[members]  # noqa: UP007 (a tuple of members)
    elif origin in (list, dict, tuple, set, frozenset, Sequence, Mapping):
        members = tuple(_documentable(a, cache, one_ofs) for a in args)
        if any(m is not a for m, a in zip(members, args, strict=True)):
            result = origin[members]
    elif typing.is_typeddict(kind):
        # (__required_keys__ is wrong for string annotations on 3.11: read the wrappers)
        hints = typing.get_type_hints(kind, include_extras=True)
        fields = {name: _documentable(_unwrapped(hint), cache, one_ofs)
                  for name, hint in hints.items()}
        if any(fields[name] is not _unwrapped(hint) for name, hint in hints.items()):
            copy: Any = typing.TypedDict(  # type: ignore[misc]
                kind.__name__, {name: hint if _required(hints[name], kind.__total__)
                                else NotRequired[hint] for name, hint in fields.items()})
            copy.__doc__, copy.__module__ = kind.__doc__, kind.__module__
            result = copy
    with contextlib.suppress(TypeError):
        cache[kind] = result
    return result


def _unwrapped(hint: Any) -> Any:
    if typing.get_origin(hint) in (Required, NotRequired):
        return typing.get_args(hint)[0]
    return hint


def _required(hint: Any, total: bool) -> bool:
    origin = typing.get_origin(hint)
    return True if origin is Required else False if origin is NotRequired else total


def refs(node: Any) -> Iterator[str]:
    """Every `$ref` in a document (for its tests)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)

