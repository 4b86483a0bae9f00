"""In-memory fakes of what handlers and stores use, for fast handler unit tests (no broker, no
database server).

- ``FakeDatabase`` / ``FakeCollection``: the subset of PyMongo's async collection API the
  stores call, with MongoDB's matching rules for the operators they use. Documents are copied
  in and out, so a caller never changes stored state by mutating what it read.
- ``FakeUnitOfWork``: ``UnitOfWork.transaction`` in memory. The inbox marker is inserted first
  (a duplicate ``_id`` raises ``AlreadyProcessed``); a block that raises rolls every collection
  back; a committed block's outbox lands in ``sent`` and its replies also in ``replies``.
- ``FakeRuntime``: the real ``Runtime`` (its ``transaction`` and ``claims``, so
  tokens are verified for real) over the fake unit of work, with a key pair of its own to sign
  tokens (``token``; or the one given, ``keypair=``, when the service under test signs tokens
  too), a settable clock (``now``) and consumer lag (``behind``).

The runtime's ``Transaction`` is used as is (its ``emit``/``reply``/``fail``), so envelopes,
message ids and reply rules are the production ones. The stores see the plain ``mongodb``
dialect (``plain_dialect``).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from bson import ObjectId
from pymongo import DeleteOne, InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import DuplicateKeyError

from contracts.auth import ChildGrant, Role
from contracts.catalog import APP_REPLIES, reply_topic_problem
from contracts.envelope import ContractModel, Envelope, ErrorReply
from services.runtime import dialect
from services.runtime.consumer import Inbound
from services.runtime.mongo import AlreadyProcessed, Doc, PendingMessage, Transaction, UnitOfWork
from services.runtime.service import Runtime
from services.runtime.settings import InfraSettings, ServiceSettings
from services.runtime.tokens import generate_keypair, issue_access_token

S = TypeVar("S", bound=ServiceSettings)
M = TypeVar("M", bound=ContractModel)

_MISSING = object()


# --- matching --------------------------------------------------------------------------------

def _get(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _candidates(value: Any) -> list[Any]:
    """What a condition on a field is tested against: the value, and each element of an
    array (MongoDB matches ``{tags: "x"}`` when the array ``tags`` holds "x")."""
    if value is _MISSING:
        return [None]  # a missing field equals null
    if isinstance(value, list):
        return [value, *value]
    return [value]


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        return False
    try:
        return {"$lt": left < right, "$lte": left <= right,
                "$gt": left > right, "$gte": left >= right}[op]
    except TypeError:  # different BSON types never compare in a range query
        return False


def _condition(value: Any, cond: Any) -> bool:
    if not (isinstance(cond, Mapping) and cond and all(str(k).startswith("$") for k in cond)):
        return any(c == cond for c in _candidates(value))
    for op, arg in cond.items():
        found = _candidates(value)
        if op == "$eq":
            ok = any(c == arg for c in found)
        elif op == "$ne":
            ok = not any(c == arg for c in found)
        elif op == "$in":
            ok = any(c == a for c in found for a in arg)
        elif op == "$nin":
            ok = not any(c == a for c in found for a in arg)
        elif op in ("$lt", "$lte", "$gt", "$gte"):
            ok = value is not _MISSING and any(_compare(op, c, arg) for c in found)
        elif op == "$exists":
            ok = (value is not _MISSING) == bool(arg)
        else:
            raise NotImplementedError(f"FakeCollection: query operator {op}")
        if not ok:
            return False
    return True


def matches(doc: Mapping[str, Any], query: Mapping[str, Any] | None) -> bool:
    """Whether ``doc`` matches the MongoDB filter ``query`` (the operators the stores use)."""
    for key, cond in (query or {}).items():
        if key == "$or":
            ok = any(matches(doc, q) for q in cond)
        elif key == "$and":
            ok = all(matches(doc, q) for q in cond)
        elif key.startswith("$"):
            raise NotImplementedError(f"FakeCollection: top-level operator {key}")
        else:
            ok = _condition(_get(doc, key), cond)
        if not ok:
            return False
    return True


# --- updates and projections -----------------------------------------------------------------

def _set(doc: Doc, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[last] = copy.deepcopy(value)


def _unset(doc: Doc, path: str) -> None:
    *parents, last = path.split(".")
    for part in parents:
        doc = doc.get(part, {})
    doc.pop(last, None)


def _apply(doc: Doc, update: Mapping[str, Any], *, inserting: bool) -> None:
    for op, fields in update.items():
        for path, value in fields.items():
            if path == "_id" and op != "$setOnInsert" and not inserting \
                    and value != doc.get("_id"):
                raise ValueError("FakeCollection: an update may not change _id")
            if op == "$set" or (op == "$setOnInsert" and inserting):
                _set(doc, path, value)
            elif op == "$setOnInsert":
                continue
            elif op == "$unset":
                _unset(doc, path)
            elif op == "$inc":
                current = _get(doc, path)
                _set(doc, path, (0 if current is _MISSING else current) + value)
            elif op == "$push":
                current = _get(doc, path)
                _set(doc, path, [*([] if current is _MISSING else current), value])
            else:
                raise NotImplementedError(f"FakeCollection: update operator {op}")


def _seed(query: Mapping[str, Any]) -> Doc:
    """The document an upsert starts from: the equality fields of its filter."""
    doc: Doc = {}
    for key, cond in query.items():
        if key.startswith("$"):
            continue
        if isinstance(cond, Mapping) and any(str(k).startswith("$") for k in cond):
            if "$eq" in cond:
                _set(doc, key, cond["$eq"])
            continue
        _set(doc, key, cond)
    return doc


def _project(doc: Doc, projection: Mapping[str, Any] | None) -> Doc:
    if not projection:
        return copy.deepcopy(doc)
    included = [p for p, v in projection.items() if v and p != "_id"]
    if not any(projection.values()):  # an exclusion projection
        out = copy.deepcopy(doc)
        for path, keep in projection.items():
            if not keep:
                _unset(out, path)
        return out
    out: Doc = {}
    if projection.get("_id", 1) and "_id" in doc:
        out["_id"] = copy.deepcopy(doc["_id"])
    for path in included:
        value = _get(doc, path)
        if value is not _MISSING:
            _set(out, path, value)
    return out


def _sort_key(value: Any) -> tuple[int, Any]:
    # MongoDB's order puts missing and null before any value.
    return (0, 0) if value is _MISSING or value is None else (1, value)


# --- results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class InsertResult:
    inserted_id: Any = None
    inserted_ids: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class UpdateResult:
    matched_count: int
    modified_count: int
    upserted_id: Any = None


@dataclass(frozen=True)
class DeleteResult:
    deleted_count: int


@dataclass(frozen=True)
class BulkResult:
    inserted_count: int = 0
    matched_count: int = 0
    modified_count: int = 0
    deleted_count: int = 0
    upserted_count: int = 0


# --- collections -----------------------------------------------------------------------------

class FakeCursor:
    """Sorts and limits the matching documents, then projects them (as the server does)."""

    def __init__(self, docs: list[Doc], projection: Mapping[str, Any] | None) -> None:
        self._docs = docs
        self._projection = projection
        self._limit = 0

    def sort(self, key: str | list[tuple[str, int]], direction: int = 1) -> FakeCursor:
        keys = [(key, direction)] if isinstance(key, str) else list(key)
        for path, way in reversed(keys):  # stable sorts, least significant key first
            self._docs.sort(key=lambda d, p=path: _sort_key(_get(d, p)), reverse=way < 0)
        return self

    def limit(self, n: int) -> FakeCursor:
        self._limit = n
        return self

    async def to_list(self, length: int | None = None) -> list[Doc]:
        docs = self._docs[:self._limit] if self._limit else self._docs
        return [_project(d, self._projection) for d in (docs[:length] if length else docs)]

    def __aiter__(self) -> AsyncIterator[Doc]:
        async def docs() -> AsyncIterator[Doc]:
            for doc in await self.to_list():
                yield doc
        return docs()


class FakeCollection:
    """One collection: documents by ``_id`` in insertion order; ``_id`` is unique. Indexes a
    store declares are listed back (``indexes``) but not enforced: only ``_id`` is unique."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.docs: dict[Any, Doc] = {}
        self.indexes: dict[str, Doc] = {}

    # --- indexes (recorded, so a service's start-up can run over the fakes) ------------------

    async def create_index(self, keys: Any, *, session: Any = None, **options: Any) -> str:
        key = dict(keys if isinstance(keys, list) else [(keys, 1)])
        name = options.pop("name", None) or "_".join(f"{f}_{d}" for f, d in key.items())
        self.indexes[name] = {"name": name, "key": key, **options}
        return name

    async def create_indexes(self, models: Iterable[Any], *, session: Any = None) -> list[str]:
        names = []
        for model in models:
            options = dict(model.document)
            names.append(await self.create_index(list(options.pop("key").items()), **options))
        return names

    async def list_indexes(self, *, session: Any = None) -> FakeCursor:
        return FakeCursor([{"name": "_id_", "key": {"_id": 1}},
                           *(copy.deepcopy(i) for i in self.indexes.values())], None)

    def _matching(self, query: Mapping[str, Any] | None) -> Iterator[Doc]:
        if query and set(query) == {"_id"} and not isinstance(query["_id"], Mapping):
            doc = self.docs.get(query["_id"])  # the common lookup by key
            yield from ([doc] if doc is not None else [])
            return
        yield from (d for d in list(self.docs.values()) if matches(d, query))

    def _insert(self, doc: Mapping[str, Any]) -> Any:
        stored = copy.deepcopy(dict(doc))
        stored.setdefault("_id", ObjectId())
        if stored["_id"] in self.docs:
            raise DuplicateKeyError(f"E11000 duplicate key error collection: {self.name} "
                                    f"_id: {stored['_id']!r}", 11000)
        self.docs[stored["_id"]] = stored
        return stored["_id"]

    async def find_one(self, query: Mapping[str, Any] | None = None,
                       projection: Mapping[str, Any] | None = None, *,
                       session: Any = None) -> Doc | None:
        doc = next(self._matching(query), None)
        return _project(doc, projection) if doc is not None else None

    def find(self, query: Mapping[str, Any] | None = None,
             projection: Mapping[str, Any] | None = None, *, session: Any = None) -> FakeCursor:
        return FakeCursor(list(self._matching(query)), projection)

    async def count_documents(self, query: Mapping[str, Any], *, session: Any = None) -> int:
        return sum(1 for _ in self._matching(query))

    async def insert_one(self, doc: Mapping[str, Any], *, session: Any = None) -> InsertResult:
        return InsertResult(inserted_id=self._insert(doc))

    async def insert_many(self, docs: Iterable[Mapping[str, Any]], *, ordered: bool = True,
                          session: Any = None) -> InsertResult:
        return InsertResult(inserted_ids=[self._insert(d) for d in docs])

    async def replace_one(self, query: Mapping[str, Any], replacement: Mapping[str, Any],
                          upsert: bool = False, *, session: Any = None) -> UpdateResult:
        if any(str(k).startswith("$") for k in replacement):
            raise ValueError("FakeCollection: a replacement may not hold update operators")
        doc = next(self._matching(query), None)
        if doc is None:
            if not upsert:
                return UpdateResult(0, 0)
            new = {**_seed(query), **copy.deepcopy(dict(replacement))}
            return UpdateResult(0, 0, upserted_id=self._insert(new))
        if "_id" in replacement and replacement["_id"] != doc["_id"]:
            raise ValueError("FakeCollection: a replacement may not change _id")
        self.docs[doc["_id"]] = {"_id": doc["_id"], **copy.deepcopy(dict(replacement))}
        return UpdateResult(1, 1)

    async def _update(self, query: Mapping[str, Any], update: Mapping[str, Any],
                      upsert: bool, many: bool) -> UpdateResult:
        if not update or not all(str(k).startswith("$") for k in update):
            raise ValueError("FakeCollection: an update needs update operators")
        found = list(self._matching(query))
        if not many:
            found = found[:1]
        if not found:
            if not upsert:
                return UpdateResult(0, 0)
            new = _seed(query)
            _apply(new, update, inserting=True)
            return UpdateResult(0, 0, upserted_id=self._insert(new))
        modified = 0
        for doc in found:
            before = copy.deepcopy(doc)
            _apply(doc, update, inserting=False)
            modified += doc != before
        return UpdateResult(len(found), modified)

    async def update_one(self, query: Mapping[str, Any], update: Mapping[str, Any],
                         upsert: bool = False, *, session: Any = None) -> UpdateResult:
        return await self._update(query, update, upsert, many=False)

    async def update_many(self, query: Mapping[str, Any], update: Mapping[str, Any],
                          upsert: bool = False, *, session: Any = None) -> UpdateResult:
        return await self._update(query, update, upsert, many=True)

    async def find_one_and_delete(self, query: Mapping[str, Any],
                                  projection: Mapping[str, Any] | None = None, *,
                                  session: Any = None) -> Doc | None:
        doc = next(self._matching(query), None)
        if doc is None:
            return None
        del self.docs[doc["_id"]]
        return _project(doc, projection)

    async def delete_one(self, query: Mapping[str, Any], *, session: Any = None) -> DeleteResult:
        doc = next(self._matching(query), None)
        if doc is not None:
            del self.docs[doc["_id"]]
        return DeleteResult(0 if doc is None else 1)

    async def delete_many(self, query: Mapping[str, Any], *,
                          session: Any = None) -> DeleteResult:
        gone = [d["_id"] for d in self._matching(query)]
        for _id in gone:
            del self.docs[_id]
        return DeleteResult(len(gone))

    async def bulk_write(self, requests: Iterable[Any], ordered: bool = True, *,
                         session: Any = None) -> BulkResult:
        """InsertOne, UpdateOne, ReplaceOne and DeleteOne, in order (stops at the first
        error, like an ordered bulk write)."""
        counts = dict.fromkeys(("inserted", "matched", "modified", "deleted", "upserted"), 0)
        for r in requests:
            if isinstance(r, InsertOne):
                await self.insert_one(r._doc)
                counts["inserted"] += 1
                continue
            if isinstance(r, DeleteOne):
                counts["deleted"] += (await self.delete_one(r._filter)).deleted_count
                continue
            if isinstance(r, UpdateOne):
                result = await self.update_one(r._filter, r._doc, bool(r._upsert))
            elif isinstance(r, ReplaceOne):
                result = await self.replace_one(r._filter, r._doc, bool(r._upsert))
            else:
                raise NotImplementedError(f"FakeCollection: bulk request {type(r).__name__}")
            counts["matched"] += result.matched_count
            counts["modified"] += result.modified_count
            counts["upserted"] += result.upserted_id is not None
        return BulkResult(**{f"{k}_count": v for k, v in counts.items()})


class FakeDatabase:
    """Collections by name, created on first use (``db.x`` or ``db["x"]``)."""

    def __init__(self) -> None:
        self.collections: dict[str, FakeCollection] = {}

    def __getitem__(self, name: str) -> FakeCollection:
        return self.collections.setdefault(name, FakeCollection(name))

    def __getattr__(self, name: str) -> FakeCollection:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def dump(self) -> dict[str, dict[Any, Doc]]:
        """A deep copy of every non-empty collection: compare two to see what changed."""
        return {name: copy.deepcopy(c.docs) for name, c in self.collections.items() if c.docs}

    def restore(self, saved: dict[str, dict[Any, Doc]]) -> None:
        for name, coll in self.collections.items():
            coll.docs = copy.deepcopy(saved.get(name, {}))


# --- the unit of work ------------------------------------------------------------------------

@dataclass
class FakeTransaction(Transaction):
    """The runtime's Transaction (emit/reply/fail unchanged) that also notes its replies."""

    replied: list[PendingMessage] = field(default_factory=list)

    def reply(self, message: ContractModel) -> None:
        before = len(self.outbox)
        super().reply(message)
        self.replied.extend(self.outbox[before:])


class FakeUnitOfWork:
    """``UnitOfWork.transaction`` over a FakeDatabase: all or nothing, inbox first."""

    def __init__(self, db: FakeDatabase, service: str) -> None:
        self.db = db
        self.service = service
        self.inbox = db[f"{service}_inbox"]
        self.sent: list[PendingMessage] = []  # committed outbox, replies included, in order
        self.replies: list[PendingMessage] = []
        self.commits = 0

    @asynccontextmanager
    async def transaction(self, *, inbox_id: str | None, cause: Envelope | None = None,
                          now: datetime | None = None) -> AsyncIterator[Transaction]:
        saved = self.db.dump()
        tx = FakeTransaction(session=None, db=self.db, source=self.service,  # type: ignore[arg-type]
                             cause=cause, now=now or datetime.now(UTC))
        try:
            if inbox_id is not None:
                try:
                    await self.inbox.insert_one({"_id": inbox_id, "at": datetime.now(UTC)})
                except DuplicateKeyError:
                    raise AlreadyProcessed(inbox_id) from None
            yield tx
            await UnitOfWork._write_staged(tx.staged, None)  # type: ignore[arg-type]
        except BaseException:
            self.db.restore(saved)
            raise
        self.commits += 1
        self.sent.extend(tx.outbox)
        self.replies.extend(tx.replied)
        for callback in tx.after_commit:
            callback()


# --- the runtime -----------------------------------------------------------------------------

FAKE_INFRA = {"kafka_bootstrap": "fake-broker:9092", "mongo_uri": "mongodb://fake-mongo"}


class FakeRuntime(Runtime):
    """What ``Runtime`` gives handlers, in memory. ``now`` is the clock; ``behind`` is what
    ``lag`` answers; ``token(...)`` signs access tokens that ``claims`` accepts."""

    def __init__(self, service: str, settings_class: type[S], *,
                 now: datetime = datetime(2025, 9, 1, 9, 0, tzinfo=UTC),
                 keypair: tuple[str, str] | None = None, **settings: Any) -> None:
        self.private_key, public_key = keypair or generate_keypair()
        infra = InfraSettings(**FAKE_INFRA, auth_public_key=public_key)
        db = FakeDatabase()
        super().__init__(service=service, settings=settings_class(infra=infra, **settings),
                         client=None, uow=FakeUnitOfWork(db, service),  # type: ignore[arg-type]
                         broker=None, clock=lambda: self.now)  # type: ignore[arg-type]
        self.now = now
        self.behind = 0
        self.fake_db = db
        self.fake_uow: FakeUnitOfWork = self.uow  # type: ignore[assignment]

    async def lag(self, topic: str) -> int:
        return self.behind

    # --- building input ----------------------------------------------------------------------

    def token(self, role: Role = Role.PARENT, *, account_id: str = "acc_parent0001",
              children: Iterable[ChildGrant] = (), school_id: str | None = None,
              session_id: str = "sess_fake0001", operator_id: str | None = None) -> str:
        """A valid access token signed with this runtime's key, issued ``now``."""
        return issue_access_token(self.private_key, account_id=account_id,
                                  session_id=session_id, role=role, children=children,
                                  school_id=school_id, operator_id=operator_id,
                                  now=self.now.timestamp())

    def inbound(self, message: M, *, key: str | None = None, token: str | None = None,
                reply_to: str | None = None, envelope: Envelope | None = None,
                source: str = "test") -> Inbound[M]:
        """A delivered message; a command with a ``token`` gets the app reply topic unless
        ``reply_to`` names another (pass ``reply_to=""`` for none)."""
        if reply_to is None:
            reply_to = APP_REPLIES if token is not None else ""
        env = envelope or Envelope.new(message, source=source, subject=key, time=self.now,
                                       reply_to=reply_to or None)
        return Inbound(message=message, envelope=env, topic="test-topic", partition=0,
                       offset=next(_offsets), key=key, authorization=token)

    # --- reading output ----------------------------------------------------------------------

    def emitted(self, kind: type[M] | None = None) -> list[M]:
        """Committed messages for other services (not replies), of type ``kind`` if given."""
        found = [p.message for p in self.fake_uow.sent if reply_topic_problem(p.topic) is not None]
        return [m for m in found if kind is None or isinstance(m, kind)]  # type: ignore[misc]

    def emitted_records(self) -> list[PendingMessage]:
        return [p for p in self.fake_uow.sent if reply_topic_problem(p.topic) is not None]

    def replies(self) -> list[ContractModel]:
        return [p.message for p in self.fake_uow.replies]

    def reply(self) -> ContractModel:
        """The one reply sent so far."""
        replies = self.replies()
        assert len(replies) == 1, f"expected one reply, got {replies!r}"
        return replies[0]

    def error_code(self) -> str:
        """The code of the one reply, which must be an error."""
        reply = self.reply()
        assert isinstance(reply, ErrorReply), f"expected an error reply, got {reply!r}"
        return reply.error.code

    async def redelivered_changes_nothing(self, handler: Callable[[Inbound[Any]], Any],
                                          msg: Inbound[Any]) -> None:
        """Deliver ``msg`` again: the inbox refuses it and neither the database nor the
        committed outbox changes."""
        before, sent = self.fake_db.dump(), len(self.fake_uow.sent)
        try:
            await handler(msg)
        except AlreadyProcessed:
            pass
        else:
            raise AssertionError("the duplicate delivery was not refused by the inbox")
        assert self.fake_db.dump() == before
        assert len(self.fake_uow.sent) == sent


_offsets = itertools.count()


@contextmanager
def plain_dialect() -> Iterator[None]:
    """The stores' dialect is process-wide: the fakes answer plain MongoDB queries, whatever
    an earlier test in the session chose."""
    previous = dialect.current().name
    dialect.use("mongodb")
    try:
        yield
    finally:
        dialect.use(previous)
