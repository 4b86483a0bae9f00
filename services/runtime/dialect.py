"""The one place where the stores' MongoDB code differs between servers.

Production runs MongoDB replica sets; local development and every test run the
MongoDB-protocol dev server nx-27017, whose queries differ from MongoDB's in a few ways. The
stores are written as plain MongoDB code and ask the process's dialect (``current()``) for the
few operations where the two servers differ:

===============================  ==========================  ==================================
operation                        MongoDB                     nx-27017
===============================  ==========================  ==================================
``instant(dt)``                  the datetime                epoch milliseconds (int)
``read_instant(value)``          datetime -> UTC             also epoch ms and ``$set`` strings
``any_of(coll, filters, ...)``   one query with ``$or``      one query per filter, merged
``has(field, value)``            ``{field: value}``          ``{field: {"$in": [value]}}``
``upsert_replacement(id, doc)``  the document               the document with its ``_id``
``projection(*paths)``           those (dotted) fields       None: whole documents
``change_expiry(...)``           ``collMod``                 drop and create the index again
``create_indexes(coll, models)`` the models                  also one index per field of a
                                                             compound index but its last
``is_write_conflict(exc)``       label / code 112            also "WriteConflict: ..." text
===============================  ==========================  ==================================

The dialect is a setting, ``SCHOOLCARD_MONGO_DIALECT`` (``mongodb`` by default; the local
stack and the tests set ``nx27017``). ``Service.start`` selects it for its process (``use``);
a process talks to one kind of server, so the choice is process-wide, and a store reads it
when it runs (``current()``). Each server keeps its own stored form consistent with itself: a
time the stores compare as a range (wallet's ``at_ms`` and ``parked_ms``, notify's
``lease_until``) is epoch milliseconds on the dev server, where those fields got their names,
and a datetime on MongoDB. Never point one dialect at data the other wrote.

Layouts kept on both servers (not switchable, or not worth two layouts):

- notify's ``sendable``: a scalar copy of "status is pending or failed". nx-27017 misses
  documents when ``$in`` is combined with ``$or`` in one filter (the sender's due query), and
  the ``due`` index (``sendable``, ``due_at``) is built on it; the copy is also a good index key
  on MongoDB.
- wallet's ``next_bonus_expiry``: the earliest expiry of an account's bonus lots. nx-27017
  cannot compare fields inside arrays of documents (``bonus_lots.expires_at``); the scalar is
  indexed for the daily expiry tick (a smaller index than a multikey one on MongoDB).
- auth's ``guardian_ids``: a flat list of the guardians' account ids next to ``guardians``
  (nx-27017 does not match fields inside arrays of documents), indexed.
- notify's ``notify_guardianships``: one document per (contract, guardian) instead of an
  index on the guardian's array of children (nx-27017 cannot use an index on an array).

Kept as one ``$or``: notify's due query (lease free or expired, next to ``sendable`` and
``due_at``). The sender's conditional ``update_many`` needs the whole condition in one
filter to claim atomically, and that shape answers right on nx-27017 (the notify integration
tests), although a ``$or`` with a ``null`` alternative and nothing beside it finds nothing there.

Not query quirks, handled elsewhere: transactions (``deploy/local/mongo_server.py``), read
concern ``snapshot`` (``SCHOOLCARD_MONGO_SNAPSHOT_READS``), index names (``ensure_ttl_index``
finds an index by its key on both servers).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pymongo import IndexModel
from pymongo.errors import OperationFailure, PyMongoError

Doc = dict[str, Any]
DialectName = Literal["mongodb", "nx27017"]

_WRITE_CONFLICT = 112


def _utc(instant: datetime) -> datetime:
    """Naive datetimes from the server are UTC (a client without ``tz_aware``)."""
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


class MongoDB:
    """Plain MongoDB: every operation is the ordinary query."""

    name: DialectName = "mongodb"

    def instant(self, at: datetime) -> Any:
        """The value stored for ``at`` in a field compared as a time range, and the bound
        compared with it."""
        return _utc(at)

    def read_instant(self, value: Any) -> datetime:
        """A time read back from a document, in UTC."""
        if not isinstance(value, datetime):
            raise TypeError(f"not a stored instant: {value!r}")
        return _utc(value)

    async def any_of(self, collection: Any, filters: Iterable[Mapping[str, Any]], *,
                     where: Mapping[str, Any] | None = None, sort: str | None = None,
                     limit: int = 0, session: Any = None) -> list[Doc]:
        """The documents matching ``where`` and at least one of ``filters``, in ascending
        ``sort`` order, at most ``limit`` (0: all)."""
        cursor = collection.find({**(where or {}), "$or": [dict(f) for f in filters]},
                                 session=session)
        if sort:
            cursor = cursor.sort(sort, 1)
        return list(await cursor.to_list(limit or None))

    def has(self, field: str, value: Any) -> Doc:
        """The filter "the array ``field`` holds ``value``"."""
        return {field: value}

    def upsert_replacement(self, _id: Any, doc: Mapping[str, Any]) -> Doc:
        """The replacement of ``replace_one({"_id": _id}, ..., upsert=True)``: the insert
        takes its ``_id`` from the filter."""
        return {k: v for k, v in doc.items() if k != "_id"}

    def projection(self, *paths: str) -> Doc | None:
        """The projection of ``paths`` (dotted paths into sub-documents come back nested), or
        None for whole documents."""
        return dict.fromkeys(paths, 1)

    async def change_expiry(self, collection: Any, index: Mapping[str, Any], field: str,
                            seconds: int, name: str) -> None:
        """Change the ``expireAfterSeconds`` of the TTL ``index`` on ``field`` in place
        (creating it again with other options fails with IndexOptionsConflict)."""
        await collection.database.command({"collMod": collection.name, "index": {
            "name": index["name"], "expireAfterSeconds": seconds}})

    async def create_indexes(self, collection: Any, models: list[IndexModel]) -> None:
        """Create the secondary ``models`` of ``collection`` (a no-op for those that exist)."""
        await collection.create_indexes(models)

    def is_write_conflict(self, exc: BaseException) -> bool:
        """The server aborted the transaction because another one wrote the same documents
        (labelled TransientTransactionError, code 112)."""
        if not isinstance(exc, PyMongoError):
            return False
        return (exc.has_error_label("TransientTransactionError")
                or (isinstance(exc, OperationFailure) and exc.code == _WRITE_CONFLICT))


class Nx27017(MongoDB):
    """The dev server nx-27017: each operation works around one of its query quirks."""

    name: DialectName = "nx27017"

    def instant(self, at: datetime) -> Any:
        # A $lt range on a datetime may miss freshly written documents, and update_many with
        # $set stores a datetime as a string that no longer compares as a date: times that
        # are compared are kept as epoch milliseconds.
        return int(at.timestamp() * 1000)

    def read_instant(self, value: Any) -> datetime:
        # Epoch milliseconds (``instant``), or a datetime written with $set on an existing
        # document, which nx-27017 keeps as a string ("2026-09-01 05:12:30.468000", UTC).
        if isinstance(value, bool):
            raise TypeError(f"not a stored instant: {value!r}")
        if isinstance(value, int):
            return datetime.fromtimestamp(value // 1000, UTC) + timedelta(
                milliseconds=value % 1000)
        if isinstance(value, str):
            return _utc(datetime.fromisoformat(value))
        return super().read_instant(value)

    async def any_of(self, collection: Any, filters: Iterable[Mapping[str, Any]], *,
                     where: Mapping[str, Any] | None = None, sort: str | None = None,
                     limit: int = 0, session: Any = None) -> list[Doc]:
        # A filter whose $or holds a range ignores its other conditions (the relay re-sent
        # published records and starved new ones): one plain query per alternative, each
        # taking up to ``limit`` in order, merged.
        found: dict[Any, Doc] = {}
        for alternative in filters:
            cursor = collection.find({**(where or {}), **alternative}, session=session)
            if sort:
                cursor = cursor.sort(sort, 1)
            for doc in await cursor.to_list(limit or None):
                found.setdefault(doc["_id"], doc)
        docs = list(found.values())
        if sort:
            docs = heapq.nsmallest(limit, docs, key=lambda d: d[sort]) if limit else \
                sorted(docs, key=lambda d: d[sort])
        return docs[:limit] if limit else docs

    def has(self, field: str, value: Any) -> Doc:
        # Equality with an element of an indexed array field finds nothing; $in does.
        return {field: {"$in": [value]}}

    def upsert_replacement(self, _id: Any, doc: Mapping[str, Any]) -> Doc:
        # A replace with upsert drops the filter's _id and inserts with a new ObjectId.
        return {"_id": _id, **{k: v for k, v in doc.items() if k != "_id"}}

    def projection(self, *paths: str) -> Doc | None:
        # A dotted projection comes back flattened ({"rules.x": 5}, not {"rules": {"x": 5}}).
        if any("." in path for path in paths):
            return None
        return super().projection(*paths)

    async def change_expiry(self, collection: Any, index: Mapping[str, Any], field: str,
                            seconds: int, name: str) -> None:
        # collMod answers ok and changes nothing; creating the index again with another
        # expireAfterSeconds would silently replace it, but under nx-27017's own name.
        await collection.drop_index(index["name"])
        await collection.create_index([(field, 1)], expireAfterSeconds=seconds, name=name)

    async def create_indexes(self, collection: Any, models: list[IndexModel]) -> None:
        # An equality on a field counts as indexed only when an index's name ends with that
        # field (the server names an index after all its fields); any other equality becomes
        # "field = v OR v in the array field", which scans the whole collection. So a compound
        # index serves only its last field: every other field of one gets its own index too
        # (the outbox's pending query took 13 ms on 20,000 records, 0.7 ms with it).
        single = {tuple(m.document["key"]) for m in models if len(m.document["key"]) == 1}
        prefixes = {field for m in models for field in list(m.document["key"])[:-1]}
        extra = [IndexModel([(field, 1)]) for field in sorted(prefixes) if (field,) not in single]
        await collection.create_indexes([*models, *extra])

    def is_write_conflict(self, exc: BaseException) -> bool:
        # Answered as "WriteConflict: another transaction holds the database", without the
        # TransientTransactionError label.
        return super().is_write_conflict(exc) or (
            isinstance(exc, OperationFailure) and str(exc).startswith("WriteConflict"))


Dialect = MongoDB
"""The interface: ``MongoDB`` is the plain dialect, ``Nx27017`` overrides its operations."""

DIALECTS: dict[str, Dialect] = {"mongodb": MongoDB(), "nx27017": Nx27017()}

_current: Dialect = DIALECTS["mongodb"]


def use(name: str) -> Dialect:
    """Select the dialect of this process's MongoDB server (``Service.start``, test setup)."""
    global _current
    try:
        _current = DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown MongoDB dialect {name!r}; one of {sorted(DIALECTS)}") \
            from None
    return _current


def current() -> Dialect:
    """The dialect the stores use in this process (``mongodb`` until ``use`` chose one)."""
    return _current
