"""MongoDB: the client, the unit of work (state + outbox + inbox in one transaction) and the
outbox relay.

Each service owns one database; collection names are prefixed by the service. Handlers never
publish: ``UnitOfWork.emit`` adds an outbox record inside the transaction, and ``OutboxRelay``
publishes committed records with their aggregate key, retrying until the broker takes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, InsertOne, ReplaceOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    CollectionInvalid,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    ServerSelectionTimeoutError,
)
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from contracts.catalog import reply_topic_problem
from contracts.envelope import (
    ERROR_MESSAGE_MAX,
    ContractModel,
    Envelope,
    ErrorInfo,
    ErrorReply,
    encode,
)
from services.runtime import dialect, metrics
from services.runtime.logs import get_logger
from services.runtime.tracing import current_traceparent, under

log = get_logger("schoolcard.outbox")

INFRA_ERRORS = (AutoReconnect, ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError)
"""Database unreachable: retried without limit (the message is fine, the world is not)."""

Doc = dict[str, Any]


REPLY_MAX_BYTES = 900_000
"""Largest reply payload a service sends: under the broker's default 1 MiB record limit with
room for the headers."""


class ConcurrencyError(Exception):
    """Another writer changed the document since it was loaded: the message is retried with
    fresh state (a transient fault for the consumption policy)."""


async def save_versioned(coll: Any, doc: Doc, loaded_version: int | None, *,
                         session: AsyncClientSession | None,
                         version: int | None = None) -> None:
    """Optimistic concurrency for an aggregate document carrying a ``version`` field.

    ``loaded_version`` None inserts (a duplicate ``_id`` raises DuplicateKeyError for the
    caller to interpret); otherwise the document is replaced only if its stored version is
    still ``loaded_version``, else ConcurrencyError. When ``version`` (the aggregate's current
    version) equals ``loaded_version`` nothing changed and nothing is written.
    """
    if loaded_version is None:
        await coll.insert_one(doc, session=session)
        return
    if version is not None and version == loaded_version:
        return
    result = await coll.replace_one({"_id": doc["_id"], "version": loaded_version}, doc,
                                    session=session)
    if result.matched_count != 1:
        raise ConcurrencyError(f"{coll.name}/{doc['_id']}")


def is_conflict(exc: BaseException) -> bool:
    """A lost race, not a fault: the aggregate changed between load and save
    (ConcurrencyError), or the database aborted the transaction for a write conflict (as the
    server's dialect reports it)."""
    return isinstance(exc, ConcurrencyError) or dialect.current().is_write_conflict(exc)


DAY_S = 86_400

STORED_AT = "stored_at"
"""The field the retention TTL indexes of the services' stores expire on: the wall-clock UTC
time the store last wrote the document (``datetime.now(UTC)``), never a business time (an
injected clock, a late offline tap) that could make a document expire at once."""


def with_stored_at(doc: Doc) -> Doc:
    """``doc`` stamped with the wall-clock time its retention counts from (``STORED_AT``)."""
    return {**doc, STORED_AT: datetime.now(UTC)}


def _single_field(index: Doc, field: str) -> bool:
    return list(index["key"].items()) == [(field, 1)]


async def _index_on(collection: Any, field: str) -> Doc | None:
    """The ascending single-field index on ``field`` as the server lists it (found by its key:
    nx-27017 names indexes itself, ignoring the name given; MongoDB keeps the name given)."""
    indexes = await collection.list_indexes()
    async for index in indexes:
        if _single_field(index, field):
            return dict(index)
    return None


async def ensure_ttl_index(collection: Any, field: str, seconds: int, *,
                           name: str | None = None) -> None:
    """Documents of ``collection`` expire ``seconds`` after the datetime in ``field``.

    Creates the TTL index, or changes the expiry of an existing index on ``field`` (in place
    with ``collMod`` on MongoDB, where re-creating it with other options would fail with
    IndexOptionsConflict; see ``dialect.change_expiry``), so a changed retention setting
    applies on the next start.
    """
    existing = await _index_on(collection, field)
    if existing is None:
        await collection.create_index([(field, ASCENDING)], expireAfterSeconds=seconds,
                                      name=name or f"{field}_ttl")
        return
    if existing.get("expireAfterSeconds") == seconds:
        return
    await dialect.current().change_expiry(collection, existing, field, seconds,
                                          name or f"{field}_ttl")
    log.info("ttl index changed", collection=collection.name, field=field,
             expire_after_s=seconds)


async def ensure_collections(db: Any, *names: str) -> None:
    """Create the collections a store writes that no index creates. A collection created by
    the first write inside a transaction is created in it: on nx-27017 a rolled-back batch
    takes the new table with it while the server still believes it exists, and the next
    write fails "no such table" (seen on ``transit_contract_blocks``)."""
    existing = set(await db.list_collection_names())
    for name in names:
        if name not in existing:
            with contextlib.suppress(CollectionInvalid):  # another instance created it
                await db.create_collection(name)


class AlreadyProcessed(Exception):
    """The inbox already holds this message id: the whole transaction is a duplicate."""


def connect(uri: str) -> AsyncMongoClient[Doc]:
    return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5_000,
                            connectTimeoutMS=5_000, retryWrites=True)


@dataclass
class PendingMessage:
    topic: str
    key: str
    message: ContractModel
    envelope: Envelope
    replay: bool = False
    """A recorded result sent again (a retried request): not counted again by observers."""


@dataclass
class Staged:
    """A document written at the commit (``Transaction.stage``)."""

    collection: Any
    first_version: int | None  # the version the database holds; None: a new document
    doc: Doc


@dataclass
class Transaction:
    """What a handler sees inside ``UnitOfWork.transaction()``."""

    session: AsyncClientSession
    db: AsyncDatabase[Doc]
    source: str
    cause: Envelope | None
    now: datetime
    outbox: list[PendingMessage] = field(default_factory=list)
    reply_max_bytes: int = REPLY_MAX_BYTES
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    shared: dict[tuple[str, Hashable], Any] | None = None
    """Reference documents read once per batch (``cached``); None outside a batch."""
    staged: dict[tuple[str, Any], Staged] = field(default_factory=dict)
    """Documents written at the commit (``stage``), shared by the units of work of a batch."""

    def _traceparent(self) -> str | None:
        """The trace what is emitted now belongs to: the current span (the handler's, a child
        of the message's), else the cause's trace."""
        return current_traceparent() or (self.cause.traceparent if self.cause else None)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this unit of work is committed (with its batch, if any)."""
        self.after_commit.append(callback)

    async def cached(self, kind: str, key: Hashable, load: Callable[[], Awaitable[Any]]) -> Any:
        """What ``load()`` reads (documents, not domain objects), read once per batch:
        reference data several messages of a batch look up (a school's schedule, an
        operator's fare rules, a child's guardians). Each caller gets its own copy. The store
        that writes such data calls ``forget(kind)`` in the same unit of work, so the later
        messages of the batch read it again (and see the write)."""
        if self.shared is None:
            return await load()
        if (kind, key) not in self.shared:
            self.shared[(kind, key)] = await load()
        return copy.deepcopy(self.shared[(kind, key)])

    async def load(self, collection: Any, _id: Any) -> Doc | None:
        """The document ``_id`` of ``collection`` as this unit of work (and the earlier ones
        of its batch) left it: a staged one, else the stored one."""
        staged = self.staged.get((collection.name, _id))
        if staged is not None:
            return copy.deepcopy(staged.doc)
        return await collection.find_one({"_id": _id}, session=self.session)

    async def load_many(self, collection: Any, ids: list[Any]) -> list[Doc]:
        """``load`` for several ids, in one query for those not staged."""
        staged = {i: self.staged[(collection.name, i)] for i in ids
                  if (collection.name, i) in self.staged}
        rest = [i for i in ids if i not in staged]
        found = await collection.find({"_id": {"$in": rest}},
                                      session=self.session).to_list(None) if rest else []
        return [*found, *(copy.deepcopy(s.doc) for s in staged.values())]

    def stage(self, collection: Any, doc: Doc, loaded_version: int | None, *,
              version: int | None = None) -> None:
        """Write ``doc`` (a versioned document, read with ``load``) when the unit of work
        commits — inside a batch, with the batch's other staged writes, one bulk write per
        collection: inserted when ``loaded_version`` is None, else replaced if the stored
        version is still the one first loaded; nothing when ``version`` (the aggregate's
        current version) equals ``loaded_version``. A version that does not follow what was
        staged before raises ConcurrencyError (the message is retried with fresh state); so
        does a lost race at the commit. Every read of a staged collection inside units of
        work must go through ``load``/``load_many``."""
        key = (collection.name, doc["_id"])
        before = self.staged.get(key)
        if before is not None:
            if before.doc.get("version") != loaded_version:
                raise ConcurrencyError(f"{collection.name}/{doc['_id']} (staged)")
            first = before.first_version
        elif version is not None and version == loaded_version:
            return  # unchanged
        else:
            first = loaded_version
        self.staged[key] = Staged(collection, first, copy.deepcopy(doc))

    def forget(self, kind: str) -> None:
        """Drop what ``cached`` holds of ``kind`` (every key)."""
        if self.shared is not None:
            for cached in [k for k in self.shared if k[0] == kind]:
                del self.shared[cached]

    def emit(self, topic: str, key: str, message: ContractModel, *,
             reply_to: str | None = None, message_id: str | None = None,
             replay: bool = False) -> Envelope:
        """Queue a message for publication after commit; ``message_id`` makes the id
        deterministic (re-emitting a recorded result keeps its id). The record keeps the
        current trace context: the relay publishes it in the same trace. ``replay``: a recorded
        result sent again (``UnitOfWork.observe`` does not count it twice)."""
        envelope = Envelope.new(message, source=self.source, subject=key, cause=self.cause,
                                reply_to=reply_to, time=self.now, message_id=message_id,
                                traceparent=self._traceparent())
        self.outbox.append(PendingMessage(topic, key, message, envelope, replay))
        return envelope

    def fail(self, code: str, message: str) -> None:
        """Answer the request with an ErrorReply (unauthorised, forbidden, invalid...); an
        explanation longer than the contract's bound is cut to it."""
        self.reply(ErrorReply(ok=False, error=ErrorInfo(
            code=code, message=message[:ERROR_MESSAGE_MAX])))

    def reply(self, message: ContractModel) -> None:
        """Answer the request that caused this transaction, if it named a reply topic the
        catalog allows (the consumer refuses the others before any handler runs). A reply
        larger than ``reply_max_bytes`` becomes the error ``reply_too_large``: the requester
        hears why instead of waiting for a record the broker would refuse."""
        if self.cause is None or not self.cause.reply_to:
            return
        if reply_topic_problem(self.cause.reply_to) is not None:
            log.warning("reply not sent: reply topic not allowed", type=message.TYPE)
            return
        if getattr(message, "PRIVATE", False) and reply_topic_problem(
                self.cause.reply_to, private=True) is not None:
            log.error("a reply carrying secrets was addressed to the shared reply topic; "
                      "answered with an error instead", type=message.TYPE)
            message = ErrorReply(ok=False, error=ErrorInfo(
                code="private_reply_topic_required",
                message=reply_topic_problem(self.cause.reply_to, private=True) or ""))
        size = len(encode(message))
        if size > self.reply_max_bytes:
            message = ErrorReply(ok=False, error=ErrorInfo(
                code="reply_too_large",
                message=f"the answer is {size} bytes, more than {self.reply_max_bytes}: "
                        "ask for a smaller page or period"))
        envelope = Envelope.new(message, source=self.source, subject=self.cause.correlation_id,
                                cause=self.cause, time=self.now,
                                traceparent=self._traceparent())
        self.outbox.append(PendingMessage(self.cause.reply_to, self.cause.correlation_id,
                                          message, envelope))


@dataclass
class _Batch:
    """The transaction the units of work of a batch's messages join."""

    session: AsyncClientSession
    seen: set[str]
    inbox: list[Doc] = field(default_factory=list)
    outbox: list[PendingMessage] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    shared: dict[tuple[str, Hashable], Any] = field(default_factory=dict)
    staged: dict[tuple[str, Any], Staged] = field(default_factory=dict)


_BATCH: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("batch", default=None)


class UnitOfWork:
    """One MongoDB transaction holding the inbox marker, the state change and the outbox.

    The inbox insert comes first: a redelivered message hits the unique ``_id`` and the
    transaction aborts with ``AlreadyProcessed`` before any state is touched.

    Inside ``batch()`` (the consumer's batch of messages) every unit of work joins the
    batch's one transaction instead: the inbox is read once for all the batch's ids, each
    message's writes go through the shared session in order (later messages see the earlier
    ones' writes), and the inbox markers and the outbox records are written in bulk at the
    commit. A unit of work that fails leaves the batch to be rolled back by its owner.
    """

    def __init__(self, client: AsyncMongoClient[Doc], db_name: str, service: str,
                 instance_id: str, on_commit: Callable[[], None] | None = None,
                 snapshot_reads: bool = True, reply_max_bytes: int = REPLY_MAX_BYTES,
                 crash_after_commit: int = 0) -> None:
        self.client = client
        self.read_concern = ReadConcern("snapshot") if snapshot_reads else None
        self.db = client[db_name]
        self.service = service
        self.instance_id = instance_id
        self.inbox = self.db[f"{service}_inbox"]
        self.outbox = self.db[f"{service}_outbox"]
        self._on_commit = on_commit or (lambda: None)
        self._observers: list[Callable[[list[ContractModel]], None]] = []
        self.reply_max_bytes = reply_max_bytes
        self._crash_after_commit = crash_after_commit
        self._commits_with_outbox = 0

    async def ensure_indexes(self) -> None:
        await dialect.current().create_indexes(
            self.outbox, [IndexModel([("status", ASCENDING), ("seq", ASCENDING)])])
        await ensure_ttl_index(self.outbox, "published_at", 7 * DAY_S, name="outbox_ttl")
        await ensure_ttl_index(self.outbox, "parked_at", 30 * DAY_S, name="outbox_parked_ttl")
        await ensure_ttl_index(self.inbox, "at", 30 * DAY_S, name="inbox_ttl")

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncClientSession]:
        """A session in a transaction: committed when the block ends, aborted if it raises."""
        async with self.client.start_session() as session:
            await session.start_transaction(read_concern=self.read_concern,
                                            write_concern=WriteConcern("majority"))
            try:
                yield session
                await session.commit_transaction()
            except BaseException:
                if session.in_transaction:
                    await session.abort_transaction()
                raise

    @staticmethod
    async def _write_staged(staged: dict[tuple[str, Any], Staged],
                            session: AsyncClientSession) -> None:
        """The staged documents, one ordered bulk write per collection; a document another
        writer changed (or inserted) since it was loaded raises ConcurrencyError."""
        by_collection: dict[str, list[Staged]] = {}
        for item in staged.values():
            by_collection.setdefault(item.collection.name, []).append(item)
        for items in by_collection.values():
            ops: list[Any] = [
                InsertOne(s.doc) if s.first_version is None else
                ReplaceOne({"_id": s.doc["_id"], "version": s.first_version}, s.doc)
                for s in items]
            collection = items[0].collection
            try:
                result = await collection.bulk_write(ops, ordered=True, session=session)
            except BulkWriteError as exc:
                if any(e.get("code") == 11000 for e in exc.details.get("writeErrors", ())):
                    raise ConcurrencyError(f"{collection.name}: inserted meanwhile") from None
                raise
            if result.inserted_count + result.matched_count != len(ops):
                raise ConcurrencyError(f"{collection.name}: changed meanwhile")

    async def _write_outbox(self, pending: list[PendingMessage],
                            session: AsyncClientSession) -> None:
        if pending:
            await self.outbox.insert_many(
                [self._outbox_doc(p, i) for i, p in enumerate(pending)], session=session)

    @asynccontextmanager
    async def batch(self, inbox_ids: list[str]) -> AsyncIterator[None]:
        """One transaction for the units of work opened until the block ends; committed at
        its end, rolled back if the block raises."""
        started = time.perf_counter()
        async with self._session() as session:
            scope = _Batch(session, set())
            token = _BATCH.set(scope)
            try:
                if inbox_ids:
                    found = await self.inbox.find({"_id": {"$in": inbox_ids}}, {"_id": 1},
                                                  session=session).to_list(None)
                    scope.seen = {doc["_id"] for doc in found}
                yield
                await self._write_staged(scope.staged, session)
                if scope.inbox:
                    await self.inbox.insert_many(scope.inbox, session=session)
                await self._write_outbox(scope.outbox, session)
            finally:
                _BATCH.reset(token)
        metrics.TRANSACTION_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        self._committed(scope.outbox, scope.after_commit)

    def observe(self, observer: Callable[[list[ContractModel]], None]) -> None:
        """Call ``observer`` with the messages of every transaction once it has committed
        (a service's domain counters: each committed event counted once — a rolled-back or
        redelivered message's events never reach it)."""
        self._observers.append(observer)

    def _committed(self, outbox: list[PendingMessage],
                   after_commit: list[Callable[[], None]]) -> None:
        if outbox and self._observers:
            messages = [p.message for p in outbox if not p.replay]
            for observer in self._observers:
                observer(messages)
        if outbox:
            self._commits_with_outbox += 1
            if self._commits_with_outbox == self._crash_after_commit:
                log.warning("failpoint: crashing between commit and publish")
                os._exit(137)  # the fault suite's kill -9 at the worst moment
            self._on_commit()
        for callback in after_commit:
            callback()

    @asynccontextmanager
    async def transaction(self, *, inbox_id: str | None, cause: Envelope | None = None,
                          now: datetime | None = None) -> AsyncIterator[Transaction]:
        batch = _BATCH.get()
        if batch is not None:
            async with self._joined(batch, inbox_id, cause, now) as tx:
                yield tx
            return
        started = time.perf_counter()
        async with self._session() as session:
            tx = Transaction(session=session, db=self.db, source=self.service, cause=cause,
                             now=now or datetime.now(UTC), reply_max_bytes=self.reply_max_bytes)
            if inbox_id is not None:
                try:
                    # wall-clock time: the TTL must not follow an injected test clock
                    await self.inbox.insert_one({"_id": inbox_id, "at": datetime.now(UTC)},
                                                session=session)
                except DuplicateKeyError:
                    raise AlreadyProcessed(inbox_id) from None
            yield tx
            await self._write_staged(tx.staged, session)
            await self._write_outbox(tx.outbox, session)
        metrics.TRANSACTION_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        self._committed(tx.outbox, tx.after_commit)

    @asynccontextmanager
    async def _joined(self, batch: _Batch, inbox_id: str | None, cause: Envelope | None,
                      now: datetime | None) -> AsyncIterator[Transaction]:
        """A unit of work inside a batch: the duplicate check against the inbox read at the
        batch's start (and the batch's own messages), its writes in the batch's session."""
        if inbox_id is not None and inbox_id in batch.seen:
            raise AlreadyProcessed(inbox_id)
        tx = Transaction(session=batch.session, db=self.db, source=self.service, cause=cause,
                         now=now or datetime.now(UTC), reply_max_bytes=self.reply_max_bytes,
                         shared=batch.shared, staged=batch.staged)
        yield tx
        if inbox_id is not None:
            batch.seen.add(inbox_id)
            batch.inbox.append({"_id": inbox_id, "at": datetime.now(UTC)})
        batch.outbox.extend(tx.outbox)
        batch.after_commit.extend(tx.after_commit)

    def _outbox_doc(self, p: PendingMessage, index: int) -> Doc:
        return {
            "_id": uuid.uuid4().hex,  # not the message id: a recorded result may be re-sent
            "message_id": p.envelope.id,
            "seq": time.time_ns() + index,
            "topic": p.topic,
            "key": p.key,
            "type": p.envelope.type,
            "payload": encode(p.message).decode(),
            "headers": p.envelope.to_headers(),
            "status": "pending",
            "owner": self.instance_id,
            "created_at": datetime.now(UTC),  # wall clock: drives takeover, not business time
            "attempts": 0,
        }


Publish = Callable[[str, str, bytes, dict[str, str]], Awaitable[Awaitable[object]]]
"""Hands a record (topic, key, value, headers) to the producer; returns its delivery, which
completes when the broker acknowledged it."""
Probe = Callable[[], Awaitable[bool]]

LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
"""What Kafka accepts as a topic name; a record for any other name can never be published."""

PARK_AT_ONCE: tuple[tuple[type[BaseException], str], ...] = (
    (MessageSizeTooLargeError, "too_large"),
    (RecordTooLargeError, "too_large"),
    (RecordListTooLargeError, "too_large"),
    (InvalidTopicError, "invalid_topic"),
    (TopicAuthorizationFailedError, "not_authorized"),
    (PolicyViolationError, "policy_violation"),
)
"""Broker answers that no retry can change: the record is parked on the first one."""


class BrokerUnavailable(Exception):
    """A publish failed and the broker does not answer either: an outage, retried as a whole
    with backoff; no record is blamed for it."""


async def _assume_up() -> bool:
    return True


class OutboxRelay:
    """Publishes committed outbox records in commit order, keyed by aggregate.

    Each instance publishes what it wrote; records of an instance that died are taken over
    after ``takeover_s``. Delivery is at least once, and per key in commit order.

    One record never holds up the others. A failed publish holds back only the later records
    of the same key; when the broker still answers (``broker_up``), the failure is the
    record's own: it is tried again after a growing pause, and after ``max_attempts`` it is
    *parked* (status ``parked``, with the reason; metric ``schoolcard_outbox_parked_total``) so
    its key flows again. A record the broker can never take (larger than its limit, a topic
    name it refuses, a topic this service may not write) is parked at once. When the broker
    does not answer, nothing is blamed: the pass stops and is retried with backoff, so an
    outage parks nothing.

    With ``delete_published`` (the services' default) a record is deleted as soon as the
    broker took it; without it, it is marked ``sent`` and expires after a week
    (``outbox_ttl``). ``carries_secrets`` (auth's one-time codes and TOTP secrets, which must
    not outlive their delivery) deletes published records whatever ``delete_published`` says,
    and keeps no payload in a parked record; other services' parked records keep theirs, to
    be published again once their cause is fixed.

    Each record is published in the trace it was emitted in (``tracing.under``). After every
    pass — whether it published, failed or found nothing — ``schoolcard_outbox_lag_seconds``
    is the age of the oldest record still to publish and ``schoolcard_outbox_backlog`` their
    number (the pass's records; when a full batch was waiting, every pending record of the
    service's outbox); a pass that fails outright leaves the backlog as it was and the lag
    growing. ``schoolcard_outbox_failures_total{reason}`` counts what went wrong.
    """

    def __init__(self, uow: UnitOfWork, publish: Publish, *, batch: int = 200,
                 idle_s: float = 0.5, takeover_s: float = 30.0,
                 delete_published: bool = False, carries_secrets: bool = False,
                 max_attempts: int = 5,
                 publish_timeout_s: float = 10.0, retry_base_s: float = 1.0,
                 broker_up: Probe = _assume_up,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.uow = uow
        self.publish = publish
        self.batch = batch
        self.idle_s = idle_s
        self.takeover_s = takeover_s
        self.delete_published = delete_published or carries_secrets
        self.carries_secrets = carries_secrets
        self.max_attempts = max_attempts
        self.publish_timeout_s = publish_timeout_s
        self.retry_base_s = retry_base_s
        self.broker_up = broker_up
        self.clock = clock
        self.wakeup = asyncio.Event()
        self._stopping = False
        self._oldest: datetime | None = None  # of the records still to publish

    def notify(self) -> None:
        self.wakeup.set()

    async def _record_published(self, ids: list[str]) -> None:
        """Record what the broker took (mark it sent, or delete it). Retried on its own:
        giving up here would publish the same records again (harmless for consumers, but a
        stale copy on a compacted topic)."""
        delay = 0.05
        for attempt in range(6):
            try:
                if self.delete_published:
                    await self.uow.outbox.delete_many({"_id": {"$in": ids}})
                else:
                    await self.uow.outbox.update_many(
                        {"_id": {"$in": ids}},
                        {"$set": {"status": "sent", "published_at": datetime.now(UTC)}})
                return
            except Exception as exc:
                if attempt == 5:
                    raise
                log.warning("outbox mark-sent failed; retrying", error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay *= 2

    async def delete_sent(self) -> int:
        """Delete records marked sent before ``delete_published`` was switched on (they would
        otherwise wait for the week-long TTL)."""
        result = await self.uow.outbox.delete_many({"status": "sent"})
        return int(result.deleted_count)

    async def run(self) -> None:
        if self.delete_published:
            try:
                await self.delete_sent()
            except Exception as exc:  # not fatal: the TTL removes them within a week
                log.warning("outbox cleanup of sent records failed", error=type(exc).__name__)
        backoff = 0.1
        while not self._stopping:
            try:
                sent = await self.publish_pending()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = "broker_unavailable" if isinstance(exc, BrokerUnavailable) else "error"
                metrics.OUTBOX_FAILURES.labels(self.uow.service, reason).inc()
                self._report_lag()  # what waited still waits, and ages
                log.warning("outbox publish failed; will retry", error=type(exc).__name__,
                            detail=str(exc)[:200], retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if sent < self.batch:
                self.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), timeout=self.idle_s)

    async def stop(self) -> None:
        """Flush what is committed, then stop."""
        self._stopping = True
        self.wakeup.set()
        try:
            await asyncio.wait_for(self.publish_pending(), timeout=5)
        except Exception as exc:
            log.warning("outbox flush at shutdown incomplete", error=type(exc).__name__)

    async def _pending(self) -> list[Doc]:
        """The oldest pending records this instance wrote or that are old enough to take
        over from an instance that died."""
        takeover_before = self.clock() - timedelta(seconds=self.takeover_s)
        return await dialect.current().any_of(
            self.uow.outbox, [{"owner": self.uow.instance_id},
                              {"created_at": {"$lt": takeover_before}}],
            where={"status": "pending"}, sort="seq", limit=self.batch)

    def _problem(self, exc: Exception) -> tuple[str, str]:
        detail = f"{type(exc).__name__}: {str(exc)[:300]}"
        for kind, reason in PARK_AT_ONCE:
            if isinstance(exc, kind):
                return reason, detail
        return "", detail

    async def _send(self, doc: Doc) -> Awaitable[object] | tuple[str, str]:
        """Hand one record to the producer without waiting for the broker: its delivery to
        await, or (park reason or "", error) when the producer refused it at once."""
        if not LEGAL_TOPIC.fullmatch(doc["topic"]):
            return "invalid_topic", f"not a Kafka topic name ({len(doc['topic'])} characters)"
        try:
            # A producer whose buffer never drains (a hung broker) must become an error.
            with under(doc["headers"]):  # the trace the record was emitted in
                return await asyncio.wait_for(
                    self.publish(doc["topic"], doc["key"], doc["payload"].encode(),
                                 dict(doc["headers"])), timeout=self.publish_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._problem(exc)

    async def _delivered(self, delivery: Awaitable[object]) -> tuple[str, str] | None:
        """None when the broker acknowledged the record, else (park reason or "", error)."""
        try:
            await asyncio.wait_for(delivery, timeout=self.publish_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._problem(exc)
        return None

    async def publish_pending(self) -> int:
        """One pass over a batch, in waves: each wave hands the producer, in commit order,
        every record that may go (the producer keeps that order per partition and packs the
        records into few requests), then awaits the acknowledgements together. A key's
        records share a wave while they go to one topic (one partition: the producer keeps
        their order); its first record for another topic waits for the next wave, so it is
        never published before an earlier record of its key that failed."""
        docs = await self._pending()
        now_s = time.time()
        published: list[str] = []
        failed: list[tuple[Doc, str, str]] = []
        held: set[str] = set()  # keys with an earlier record unpublished: the rest waits
        try:
            waiting = docs
            while waiting:
                wave: list[tuple[Doc, Awaitable[object]]] = []
                topic_of: dict[str, str] = {}
                later: list[Doc] = []
                for doc in waiting:
                    key = doc["key"]
                    if key in held:
                        continue
                    if doc.get("retry_at_s", 0) > now_s:
                        held.add(key)
                        continue
                    if topic_of.setdefault(key, doc["topic"]) != doc["topic"]:
                        topic_of[key] = ""  # the rest of this key waits for the next wave
                        later.append(doc)
                        continue
                    sent = await self._send(doc)
                    if isinstance(sent, tuple):
                        if not sent[0]:
                            held.add(key)
                        failed.append((doc, *sent))
                    else:
                        wave.append((doc, sent))
                outcomes = await asyncio.gather(*(self._delivered(d) for _, d in wave))
                for (doc, _), problem in zip(wave, outcomes, strict=True):
                    if problem is None:
                        published.append(doc["_id"])
                        metrics.OUTBOX_PUBLISHED.labels(self.uow.service, doc["topic"]).inc()
                    else:
                        if not problem[0]:
                            held.add(doc["key"])
                        failed.append((doc, *problem))
                if any(not reason for _, reason, _ in failed):
                    break  # the broker's health is checked below before anything more goes
                waiting = later
            retryable = [detail for _, reason, detail in failed if not reason]
            if retryable and not await self._broker_answers():
                failed = [f for f in failed if f[1]]  # an outage blames no record
                raise BrokerUnavailable(retryable[0])
        finally:
            gone = set(published)
            if published:
                await self._record_published(published)
            for doc, reason, detail in failed:
                metrics.OUTBOX_FAILURES.labels(self.uow.service, reason or "refused").inc()
                if await self._record_failure(doc, reason, detail):
                    gone.add(doc["_id"])
            await self._observe(docs, gone)
        return len(docs)

    async def _observe(self, docs: list[Doc], gone: set[str]) -> None:
        """Export what is left to publish after a pass over ``docs`` (``gone``: published or
        parked). A full batch may hide more behind it: then the outbox is asked."""
        remaining = [doc for doc in docs if doc["_id"] not in gone]
        try:
            if len(docs) < self.batch:
                backlog = len(remaining)
                oldest = remaining[0]["created_at"] if remaining else None
            else:
                backlog = await self.uow.outbox.count_documents({"status": "pending"})
                first = await self.uow.outbox.find({"status": "pending"}).sort(
                    "seq", ASCENDING).to_list(1)
                oldest = first[0]["created_at"] if first else None
        except Exception as exc:  # a metric never fails the pass; the lag keeps its last oldest
            log.warning("outbox backlog not measured", error=type(exc).__name__)
            self._report_lag()
            return
        self._oldest = oldest
        metrics.OUTBOX_BACKLOG.labels(self.uow.service).set(backlog)
        self._report_lag()

    def _report_lag(self) -> None:
        """The age of the oldest record known to wait, now."""
        age = 0.0 if self._oldest is None else (self.clock() - self._oldest).total_seconds()
        metrics.OUTBOX_LAG.labels(self.uow.service).set(max(0.0, age))

    async def _broker_answers(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.broker_up(), timeout=5))
        except Exception:
            return False

    async def _record_failure(self, doc: Doc, reason: str, detail: str) -> bool:
        """Count a failed attempt of a record the broker refused while it answered; park the
        record when no retry can help (``reason``) or after ``max_attempts``. True when it
        was parked."""
        attempts = int(doc.get("attempts", 0)) + 1
        if not reason and attempts < self.max_attempts:
            pause = self.retry_base_s * 2 ** (attempts - 1)
            log.warning("outbox record refused; its key waits", topic=doc["topic"],
                        type=doc.get("type"), attempt=attempts, error=detail,
                        retry_in_s=pause)
            await self.uow.outbox.update_one({"_id": doc["_id"]}, {"$set": {
                "attempts": attempts, "last_error": detail, "retry_at_s": time.time() + pause}})
            return False
        reason = reason or "unpublishable"
        parked: Doc = {"status": "parked", "attempts": attempts, "park_reason": reason,
                       "last_error": detail, "parked_at": datetime.now(UTC)}
        if self.carries_secrets:
            parked.update(payload="", headers={})  # secrets do not outlive their delivery
        await self.uow.outbox.update_one({"_id": doc["_id"]}, {"$set": parked})
        metrics.OUTBOX_PARKED.labels(self.uow.service, reason).inc()
        log.error("outbox record parked; the records behind it flow", topic=doc["topic"][:60],
                  type=doc.get("type"), key=doc["key"][:60], reason=reason, error=detail,
                  attempts=attempts, message_id=doc.get("message_id"))
        return True


def payload_json(doc: Doc) -> Any:
    return json.loads(doc["payload"])
