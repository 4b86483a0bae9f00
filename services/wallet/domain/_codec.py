"""Dataclass <-> BSON-friendly dict conversion for the wallet's records and events.

Only str, int, bool, None, tz-aware UTC datetime, list and dict come out, so a store can hand
the result to PyMongo as is. ``from_plain`` accepts naive datetimes as UTC because PyMongo
returns naive ones unless the client is created with ``tz_aware=True``.
"""

from __future__ import annotations

import dataclasses
import types
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


def to_plain(value: object) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("refusing to store a naive datetime")
        return value.astimezone(UTC)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(to_plain(k)): to_plain(v) for k, v in value.items()}
    raise TypeError(f"cannot store {type(value).__name__}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def from_plain(tp: Any, value: Any) -> Any:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return from_plain(args[0], value)
    if tp is datetime:
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {value!r}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(value)
    if tp in (int, str, bool):
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        kwargs = {
            f.name: from_plain(hints[f.name], value[f.name])
            for f in dataclasses.fields(tp)
            if f.init and f.name in value
        }
        return tp(**kwargs)
    if origin is tuple:
        item_type = get_args(tp)[0]
        return tuple(from_plain(item_type, item) for item in value)
    if origin is list:
        return [from_plain(get_args(tp)[0], item) for item in value]
    if origin is dict:
        key_type, value_type = get_args(tp)
        return {from_plain(key_type, k): from_plain(value_type, v) for k, v in value.items()}
    raise TypeError(f"cannot load {tp!r}")


def load(cls: type[T], doc: Any) -> T:
    result: T = from_plain(cls, doc)
    return result
