"""What a request body's declared limits say when it breaks one.

A body's ranges and lengths are declared once, on its type (`Annotated[int, Meta(ge=1,
le=MAX_QUANTITY)]`): the decoder enforces them and the OpenAPI document states them. The
decoder's own message names the bound but not the value ("Expected `int` >= 1 - at
`$.orders[3].quantity`"); this puts it the way the services always have, with the value
and both bounds ("orders[3]: quantity 0 must be from 1 to 1000"). Only on the error path:
a body that decodes costs nothing here.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec import inspect

from msshop.contracts.limits import MAX_ID

_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_AT = re.compile(r" - at `\$((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])+)`$")
_BOUND = re.compile(r"^Expected `(int|float|str)` (of length )?(>=|<=)")


def out_of_range(body: bytes, kind: Any, error: msgspec.ValidationError) -> str | None:
    """The message for a value of `body` beyond a limit its declared type `kind` states,
    or None if `error` is about something else (a wrong type, a missing field)."""
    said = str(error)
    at = _AT.search(said)
    if at is None or _BOUND.match(said) is None:
        return None
    steps: list[str | int] = [int(index) if index else name
                              for name, index in _STEP.findall(at.group(1))]
    declared = _declared(inspect.type_info(kind), steps)
    if declared is None or not isinstance(steps[-1], str):
        return None
    value: Any = msgspec.json.decode(body)
    for step in steps:
        value = value[step]
    where = "".join(f".{s}" if isinstance(s, str) else f"[{s}]" for s in steps[:-1])
    field = f"{where.lstrip('.')}: {steps[-1]}" if where else steps[-1]
    return _message(field, value, declared)


def _declared(info: inspect.Type, steps: list[str | int]) -> inspect.Type | None:
    """The declared type at `steps` into a body of type `info`."""
    for step in steps:
        info = _bare(info)
        if isinstance(step, int) and isinstance(info, inspect.ListType):
            info = info.item_type
        elif isinstance(step, str) and isinstance(info, inspect.StructType):
            found = next((f for f in info.fields if f.encode_name == step), None)
            if found is None:
                return None
            info = found.type
        else:
            return None
    return _bare(info)


def _bare(info: inspect.Type) -> inspect.Type:
    """Past the Metadata wrapper, and to the one member of `X | None` that is not None."""
    if isinstance(info, inspect.Metadata):
        info = info.type
    if isinstance(info, inspect.UnionType):
        members = [t for t in info.types if not isinstance(t, inspect.NoneType)]
        if len(members) == 1:
            return _bare(members[0])
    return info


def _message(field: str, value: Any, declared: inspect.Type) -> str | None:
    if isinstance(declared, inspect.IntType | inspect.FloatType):
        low, high = declared.ge, declared.le
        if (low, high) == (1, MAX_ID):
            limit = "positive integers" if value < 1 else f"at most {MAX_ID}"
            return f"{field} {value} is not an id: ids are {limit}"
        if low is not None and high is not None:
            return f"{field} {value} must be from {low} to {high}"
    elif isinstance(declared, inspect.StrType):
        low, high = declared.min_length, declared.max_length
        if low is not None and high is not None:
            return f"{field} must be {low} to {high} characters"
        if high is not None:
            return f"{field} must be at most {high} characters"
    return None
