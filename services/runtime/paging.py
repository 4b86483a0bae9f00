"""Keyset pages over an ordered list, for list replies (statements, rides, journals) that must
stay under the broker's record size.

A cursor is the position after the last line a page returned, on a total order of the lines
(an instant and tie-breakers), not an offset: lines added between two requests neither shift
nor repeat what follows. It is opaque to clients (URL-safe base64 of a small JSON) and bound to
the query it came from (``scope``: the contract and filters), so a cursor used with other
filters, or garbage, is refused (``InvalidCursor``) instead of answering the wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")
Key = tuple[int | str, ...]

MAX_PAGE = 500
"""Most lines in one page (the contracts' ``limit`` bound)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidCursor(ValueError):
    """The cursor is not one this query handed out."""


def instant(at: datetime) -> int:
    """An instant as exact integer microseconds, for a key."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def scope_of(**query: Any) -> str:
    """What a cursor is bound to: the query's subject and filters (not its page size)."""
    text = json.dumps(query, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode(key: Key, scope: str) -> str:
    raw = json.dumps({"s": scope, "k": list(key)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, scope: str) -> Key:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        key, bound = data["k"], data["s"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise InvalidCursor("not a cursor of this query") from None
    if bound != scope or not isinstance(key, list) or \
            not all(isinstance(k, int | str) and not isinstance(k, bool) for k in key):
        raise InvalidCursor("the cursor belongs to another contract or other filters")
    return tuple(key)


def page(items: Sequence[T], key: Callable[[T], Key], *, limit: int, cursor: str | None,
         scope: str, descending: bool = False) -> tuple[list[T], str | None]:
    """The page of ``items`` (sorted by ``key``, descending if so) after ``cursor``, at most
    ``limit`` long, and the cursor of the next page (None when nothing follows)."""
    rest: Sequence[T] = items
    if cursor is not None:
        after = _decode(cursor, scope)
        try:
            rest = [i for i in items if (key(i) < after if descending else key(i) > after)]
        except TypeError:  # a key of another shape: a forged cursor
            raise InvalidCursor("not a cursor of this query") from None
    chosen = list(rest[:limit])
    following = _encode(key(chosen[-1]), scope) if len(rest) > limit else None
    return chosen, following
