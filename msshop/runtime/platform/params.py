"""A route's path and query values, converted and range-checked from what its `Param`s
declare (openapi.py): the converters are made once, when the route is registered; per
request they cost a dictionary lookup and a conversion per declared parameter.

What each declared type becomes:

- a path parameter: an id (`path_id`), a positive integer up to MAX_ID;
- `Annotated[int, Meta(ge=…, le=…)]`: an integer in that range;
- `id_list`: `?ids=1,2,3` as a list of distinct ids in the order given, at most MAX_BATCH;
- `EventTypeList`: `?types=A,B` as a frozenset of the event catalogue's types;
- `Literal[…]` of strings or of a StrEnum's members: one of them (the member itself), the
  default when left empty;
- `bool`: a flag that differs from its default only when it says so ("0"/"false" turn a
  default of true off, "1"/"true" turn a default of false on);
- `float`: a number; `Annotated[str, Meta(min_length=…, max_length=…)]`: a string that long.

A type with no converter here is refused at registration, so no route can declare what it
does not enforce. A bad value is a 422 naming the parameter, what was sent and the limit.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.types import Scope

from msshop.contracts.events import CATALOGUE
from msshop.contracts.limits import MAX_BATCH, MAX_ID
from msshop.runtime.platform.http import HttpError
from msshop.runtime.platform.openapi import EventTypeList, IdList, Param

Convert = Callable[[str], Any]  # a raw value to the typed one, or HttpError 422
#: a flag's words, from the query string
TRUE = frozenset({"1", "true"})
FALSE = frozenset({"0", "false"})


class Converter:
    """Turns a request's path and query values into the typed values its handler takes,
    by name: made once per route from its declared parameters."""

    __slots__ = ("path", "query")

    def __init__(self, params: Sequence[Param]) -> None:
        self.path = tuple((p.name, converter(p)) for p in params if p.where == "path")
        # (name, convert, default, the message when it is required and left out)
        self.query = tuple((p.name, converter(p), p.default, missing(p))
                           for p in params if p.where == "query")

    def __call__(self, scope: Scope, path_params: Mapping[str, str]) -> dict[str, Any]:
        values = {}
        for name, convert in self.path:
            values[name] = convert(path_params[name])
        if self.query:
            given = query_values(scope)
            for name, convert, default, left_out in self.query:
                raw = given.get(name)
                if raw is not None:
                    values[name] = convert(raw)
                elif left_out is None:
                    values[name] = default
                else:
                    raise HttpError(422, left_out)
        return values


def query_values(scope: Scope) -> dict[str, str]:
    """The query string's values by name (the last wins). Plain `a=b&c=d` strings (all
    msshop sends) are split here; only escaped ones pay for Starlette's full parse."""
    raw: bytes = scope["query_string"]
    if not raw:
        return {}
    if b"%" in raw or b"+" in raw:
        return dict(Request(scope).query_params)
    values = {}
    for pair in raw.split(b"&"):
        key, _, value = pair.partition(b"=")
        values[key.decode("latin-1")] = value.decode("latin-1")
    return values


def missing(param: Param) -> str | None:
    """What to answer when a required parameter is left out (None: it is not required)."""
    if not param.required:
        return None
    return param.missing or f"query parameter {param.name} is required: {param.description}"


def converter(param: Param) -> Convert:
    """The conversion `param`'s declared type says; TypeError for a type without one."""
    name, kind = param.name, param.type
    if param.where == "path":
        if int_range(kind) != (1, MAX_ID):
            raise TypeError(f"path parameter {name}: only ids (path_id) are converted")
        return path_id(name)
    if kind is IdList:
        return lambda raw: id_list(raw, name)
    if kind is EventTypeList:
        return lambda raw: event_types(raw, name)
    if kind is bool:
        return flag(param.default is not None and bool(param.default))
    if kind is float:
        return number(name, param.description)
    if typing.get_origin(kind) is Literal:
        return choice(name, typing.get_args(kind), param.default)
    bounds = int_range(kind)
    if bounds is not None:
        return integer(name, *bounds)
    lengths = str_length(kind)
    if lengths is not None:
        return string(name, *lengths)
    raise TypeError(f"query parameter {name}: no converter for {kind!r}")


def meta(kind: Any, base: type) -> msgspec.Meta | None:
    """The Meta of `Annotated[base, Meta(…)]`, else None."""
    if typing.get_origin(kind) is not Annotated or typing.get_args(kind)[0] is not base:
        return None
    return next((m for m in kind.__metadata__ if isinstance(m, msgspec.Meta)), None)


def int_range(kind: Any) -> tuple[int, int] | None:
    found = meta(kind, int)
    if found is None or found.ge is None or found.le is None:
        return None
    return int(found.ge), int(found.le)


def str_length(kind: Any) -> tuple[int, int] | None:
    found = meta(kind, str)
    if found is None or found.min_length is None or found.max_length is None:
        return None
    return found.min_length, found.max_length


def positive_int(raw: str, what: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(422, f"{what} is not an id: ids are positive integers") from None
    if value < 1:
        raise HttpError(422, f"{what} is not an id: ids are positive integers")
    if value > MAX_ID:
        raise HttpError(422, f"{what} is not an id: ids are at most {MAX_ID}")
    return value


def path_id(name: str) -> Convert:
    def convert(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if 1 <= value <= MAX_ID:
            return value
        return positive_int(raw, f"{name} '{raw}'")  # says what is wrong

    return convert


def id_list(raw: str, name: str) -> list[int]:
    """`1,2,3` as distinct ids in the order given. The usual list (plain ids, none left
    empty) is converted at once; anything else goes the careful way, which names the entry
    that is wrong."""
    parts = raw.split(",")
    if len(parts) <= MAX_BATCH:
        try:
            ids = [int(p) for p in parts]
        except ValueError:  # an empty entry, or not a number
            pass
        else:
            if min(ids) >= 1 and max(ids) <= MAX_ID:
                return list(dict.fromkeys(ids))
    return listed_ids(raw, name)


def listed_ids(raw: str, name: str) -> list[int]:
    parts = [p for p in raw.split(",") if p.strip()]
    if len(parts) > MAX_BATCH:
        raise HttpError(422, f"query parameter {name} has {len(parts)} ids; "
                             f"ask for at most {MAX_BATCH} at a time")
    ids = [positive_int(p.strip(), f"{name} entry '{p.strip()}'") for p in parts]
    return list(dict.fromkeys(ids))


def event_types(raw: str, name: str) -> frozenset[str]:
    """`A,B` as a set of the catalogue's event types; a 422 names the ones that are not."""
    types = frozenset(raw.split(","))
    if types <= CATALOGUE.keys():
        return types
    unknown = sorted(t for t in types - CATALOGUE.keys() if t)
    if not unknown:
        raise HttpError(422, f"query parameter {name}={raw!r} has an empty entry: name event "
                             "types separated by commas, or leave it out to read every type")
    raise HttpError(422, f"query parameter {name}: {', '.join(repr(t) for t in unknown)[:200]} "
                         f"{'is not an event type' if len(unknown) == 1 else 'are not event types'}"
                         f"; the types are {', '.join(sorted(CATALOGUE))}")


def integer(name: str, low: int, high: int) -> Convert:
    def convert(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise HttpError(422, f"query parameter {name}={raw!r} must be an integer "
                                 f"from {low} to {high}")
        return value

    return convert


def flag(default: bool) -> Convert:
    if default:
        return lambda raw: raw not in FALSE
    return lambda raw: raw in TRUE


def number(name: str, description: str) -> Convert:
    def convert(raw: str) -> float:
        try:
            return float(raw)
        except ValueError:
            raise HttpError(422, f"query parameter {name}={raw!r} must be a number: "
                                 f"{description}") from None

    return convert


def choice(name: str, members: tuple[Any, ...], default: Any) -> Convert:
    """One of `members`, by its string: a StrEnum's member is its value."""
    by_name = {str(member): member for member in members}
    choices = ", ".join(by_name)

    def convert(raw: str) -> Any:
        found = by_name.get(raw)
        if found is not None:
            return found
        if not raw:
            return default
        raise HttpError(422, f"{name} {raw!r} is not one of: {choices}")

    return convert


def string(name: str, low: int, high: int) -> Convert:
    size = f"{low}" if low == high else f"{low} to {high}"

    def convert(raw: str) -> str:
        if not low <= len(raw) <= high:
            raise HttpError(422, f"query parameter {name}={raw!r} must be {size} characters")
        return raw

    return convert
