"""The only module of notify that talks to MongoDB.

Collections (database ``schoolcard_notify``):
- ``notify_guardians``: one document per guardian account (the Guardian projection: contacts,
  locale, children and roles, preferences), optimistic ``version``.
- ``notify_guardianships``: one document per (contract, guardian) pair, the lookup "who are the
  guardians of this child" (a scalar index; see ``services/runtime/dialect.py``).
- ``notify_push_tokens``: device tokens per guardian account (secrets: never logged), each
  with the auth session that registered it (``session_id``), deleted when that session ends.
- ``notify_session_ends``: the session ends auth announced (one session, ``ses:<id>``; every
  session of an account, ``acc:<id>``, the latest), so a registration with the access token
  of an ended session is refused; kept a day (access tokens live five minutes).
- ``notify_messages``: one document per message, ``_id`` = dedupe key ``event:guardian:channel``
  (the unique key that makes "at most one message per event, guardian and channel" hold under
  any redelivery); delivery state, the sender's lease, and the journal line it becomes.
- ``notify_journeys``: one document per child and school day (the journey timeline).
- ``notify_push_removals``: the RemovePushToken request ids applied (-> the device removed),
  so a retry is answered the same; kept a day.
- ``notify_support_requests``: one document per support request (``_id`` the ticket id, from
  the parent's request id), its thread and status, optimistic ``version``.
- ``notify_code_counts``: one-time codes sent per number and UTC day (by hour) and per UTC
  minute in total (the SMS quotas), kept two days.

Messages expire ``NOTIFY_JOURNAL_RETENTION_DAYS`` after ``created_at``; journeys (rides and
gate passages: location data) ``NOTIFY_JOURNEY_RETENTION_DAYS`` after ``stored_at``, the
wall-clock time of their last change. Both are TTL indexes kept by ``ensure_ttl_index``.

Messages and journeys are *staged* (``tx.stage``): written when the unit of work commits —
inside a consumer batch or a sender pass, all of them in one bulk write per collection — and
read through ``tx.load``/``tx.load_many`` so a later message of the batch sees them. The
journal (a query by guardian) reads what is committed.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from services.notify.domain import (
    DeliveryStatus,
    Guardian,
    JourneyDay,
    Message,
    MinuteTotal,
    NumberDay,
    PushDevice,
    SessionEnd,
    SupportTicket,
    buckets_of,
)
from services.runtime import dialect
from services.runtime.mongo import (
    DAY_S,
    STORED_AT,
    Transaction,
    ensure_collections,
    ensure_ttl_index,
    save_versioned,
    with_stored_at,
)

Doc = dict[str, Any]
OPEN = [DeliveryStatus.PENDING.value, DeliveryStatus.FAILED.value]



async def ensure_indexes(db: Any, *, journal_retention_days: int,
                         journey_retention_days: int) -> None:
    await ensure_collections(db, "notify_guardians")
    await dialect.current().create_indexes(
        db.notify_guardianships, [IndexModel([("contract", ASCENDING)])])
    await dialect.current().create_indexes(
        db.notify_push_tokens, [IndexModel([("account_id", ASCENDING)])])
    await dialect.current().create_indexes(db.notify_messages, [
        IndexModel([("sendable", ASCENDING), ("due_at", ASCENDING)], name="due"),
        IndexModel([("guardian_id", ASCENDING), ("occurred_at", DESCENDING)], name="journal"),
        IndexModel([("status", ASCENDING), ("digest_day", ASCENDING)], name="held"),
    ])
    await ensure_ttl_index(db.notify_messages, "created_at", journal_retention_days * DAY_S,
                           name="retention")
    await ensure_ttl_index(db.notify_journeys, STORED_AT, journey_retention_days * DAY_S)
    await ensure_ttl_index(db.notify_code_counts, STORED_AT, 2 * DAY_S)
    await ensure_ttl_index(db.notify_session_ends, STORED_AT, DAY_S)
    await ensure_ttl_index(db.notify_push_removals, STORED_AT, DAY_S)
    await dialect.current().create_indexes(db.notify_support_requests, [
        IndexModel([("account_id", ASCENDING)]), IndexModel([("school_id", ASCENDING)]),
        IndexModel([("status", ASCENDING)]), IndexModel([("updated_ms", DESCENDING)])])


# -- guardians ------------------------------------------------------------------------------

def _guardian(doc: Doc) -> Guardian:
    doc = dict(doc)
    doc.pop("_id", None)
    return Guardian.from_doc(doc)


GUARDIANS = "guardians"
"""What ``tx.cached`` holds of the guardians (read by most messages of a batch)."""


async def load_guardian(tx: Transaction, account_id: str) -> Guardian | None:
    doc = await tx.cached(GUARDIANS, account_id, lambda: tx.db.notify_guardians.find_one(
        {"_id": account_id}, session=tx.session))
    return _guardian(doc) if doc else None


async def guardians_of(tx: Transaction, contract: str) -> list[Guardian]:
    async def load() -> list[Doc]:
        links = await tx.db.notify_guardianships.find({"contract": contract},
                                                      session=tx.session).to_list(None)
        if not links:
            return []
        return await tx.db.notify_guardians.find(
            {"_id": {"$in": [x["account_id"] for x in links]}}, session=tx.session).to_list(None)

    docs = await tx.cached(GUARDIANS, ("of", contract), load)
    return [g for g in map(_guardian, docs) if contract in g.children]


async def sync_guardianships(tx: Transaction, guardian: Guardian) -> None:
    """Make the contract -> guardian lookup match the guardian's children."""
    tx.forget(GUARDIANS)
    contracts = sorted(guardian.children)
    await tx.db.notify_guardianships.delete_many(
        {"account_id": guardian.account_id, "contract": {"$nin": contracts}}, session=tx.session)
    for contract in contracts:
        await tx.db.notify_guardianships.update_one(
            {"_id": f"{contract}:{guardian.account_id}"},
            {"$set": {"contract": contract, "account_id": guardian.account_id}},
            upsert=True, session=tx.session)


async def save_guardian(tx: Transaction, guardian: Guardian, loaded: int | None) -> None:
    """Insert (``loaded`` None) or replace if nobody wrote since it was loaded."""
    tx.forget(GUARDIANS)
    await save_versioned(tx.db.notify_guardians,
                         {"_id": guardian.account_id, **guardian.to_doc()}, loaded,
                         session=tx.session, version=guardian.version)


async def delete_guardian(tx: Transaction, account_id: str) -> None:
    tx.forget(GUARDIANS)
    await tx.db.notify_guardians.delete_one({"_id": account_id}, session=tx.session)
    await tx.db.notify_guardianships.delete_many({"account_id": account_id}, session=tx.session)
    await tx.db.notify_push_tokens.delete_many({"account_id": account_id}, session=tx.session)


# -- push tokens ------------------------------------------------------------------------------

async def add_push_token(tx: Transaction, account_id: str, token: str, platform: str,
                         session_id: str) -> None:
    """The device token of ``account_id``, registered from auth session ``session_id`` (a
    device registering again from a new session moves the token to it)."""
    token_id = hashlib.sha256(token.encode()).hexdigest()
    await tx.db.notify_push_tokens.update_one(
        {"_id": f"{account_id}:{token_id}"},
        {"$set": {"account_id": account_id, "token": token, "platform": platform,
                  "session_id": session_id, "at": tx.now},
         "$setOnInsert": {"registered_ms": int(tx.now.timestamp() * 1000)}},
        upsert=True, session=tx.session)


async def push_token_sessions(tx: Transaction, account_id: str) -> dict[str, str | None]:
    """The account's push tokens: id -> the session that registered it (None: stored before
    tokens were tied to sessions)."""
    docs = await tx.db.notify_push_tokens.find(
        {"account_id": account_id}, session=tx.session).to_list(None)
    return {d["_id"]: d.get("session_id") for d in docs}


async def delete_push_tokens(tx: Transaction, token_ids: list[str]) -> None:
    if token_ids:
        await tx.db.notify_push_tokens.delete_many({"_id": {"$in": token_ids}},
                                                   session=tx.session)


def _session_end_id(account_id: str, session_id: str | None) -> str:
    return f"ses:{session_id}" if session_id is not None else f"acc:{account_id}"


async def save_session_end(tx: Transaction, end: SessionEnd) -> None:
    """Remember ``end`` for a day (the account's latest end of every session replaces the one
    before: auth's events of an account arrive in order)."""
    doc_id = _session_end_id(end.account_id, end.session_id)
    await tx.db.notify_session_ends.replace_one(
        {"_id": doc_id}, dialect.current().upsert_replacement(doc_id, with_stored_at({
            "account_id": end.account_id, "session_id": end.session_id,
            "kept_session_id": end.kept_session_id,
            "at_ms": int(end.at.timestamp() * 1000)})),
        upsert=True, session=tx.session)


async def session_ends(tx: Transaction, account_id: str, session_id: str) -> list[SessionEnd]:
    """What is known to have ended of ``session_id`` and of every session of the account."""
    ids = [_session_end_id(account_id, session_id), _session_end_id(account_id, None)]
    docs = await tx.db.notify_session_ends.find({"_id": {"$in": ids}},
                                                session=tx.session).to_list(None)
    return [SessionEnd(d["account_id"], d["session_id"], d["kept_session_id"],
                       datetime.fromtimestamp(d["at_ms"] / 1000, UTC)) for d in docs]


async def push_tokens(db: Any, account_ids: list[str]) -> dict[str, list[str]]:
    docs = await db.notify_push_tokens.find({"account_id": {"$in": account_ids}}).to_list(None)
    tokens: dict[str, list[str]] = {}
    for d in docs:
        tokens.setdefault(d["account_id"], []).append(d["token"])
    return tokens


# -- messages -------------------------------------------------------------------------------

_STORE_ONLY = ("_id", "lease_until", "lease_owner", "sendable")


def _message_doc(message: Message) -> Doc:
    # ``sendable``: "status is pending or failed" as a scalar, the key of the ``due`` index
    # (kept for the dev server, see services/runtime/dialect.py). ``lease_until`` holds the
    # dialect's instant.
    return {"_id": message.dedupe_key, **message.to_doc(), "lease_until": None,
            "lease_owner": None, "sendable": message.status.value in OPEN}


def _message(doc: Doc) -> Message:
    doc = {k: v for k, v in doc.items() if k not in _STORE_ONLY}
    return Message.from_doc(doc)


async def existing_messages(tx: Transaction, keys: list[str]) -> dict[str, Message]:
    if not keys:
        return {}
    docs = await tx.load_many(tx.db.notify_messages, keys)
    return {d["_id"]: _message(d) for d in docs}


async def insert_messages(tx: Transaction, messages: list[Message]) -> None:
    """New messages only, written at the commit (with the batch's, in one bulk write); the
    unique ``_id`` refuses a second copy of a key even if two writers raced past the
    existence check (the loser is retried)."""
    for m in messages:
        tx.stage(tx.db.notify_messages, _message_doc(m), None)


async def load_message(tx: Transaction, key: str) -> tuple[Message, str | None] | None:
    doc = await tx.load(tx.db.notify_messages, key)
    return (_message(doc), doc.get("lease_owner")) if doc else None


async def save_message(tx: Transaction, message: Message, loaded: int) -> None:
    """Replace after a delivery attempt (releasing the lease) if nobody wrote meanwhile
    (checked at the commit)."""
    tx.stage(tx.db.notify_messages, _message_doc(message), loaded)


async def claim_due(db: Any, now: datetime, owner: str, lease: timedelta,
                    limit: int) -> list[Message]:
    """Reserve up to ``limit`` due messages for this sender (no transaction needed: the
    conditional update is atomic per document, and an expired lease frees a dead sender's
    claims)."""
    instant = dialect.current().instant
    due = {"sendable": True, "due_at": {"$lte": now},
           "$or": [{"lease_until": None}, {"lease_until": {"$lt": instant(now)}}]}
    candidates = await db.notify_messages.find(due, {"_id": 1}).sort(
        "due_at", ASCENDING).to_list(limit)
    if not candidates:
        return []
    ids = [c["_id"] for c in candidates]
    await db.notify_messages.update_many(
        {"_id": {"$in": ids}, **due},
        {"$set": {"lease_until": instant(now + lease), "lease_owner": owner}})
    docs = await db.notify_messages.find({"_id": {"$in": ids}, "lease_owner": owner,
                                          "sendable": True}).to_list(None)
    return [_message(d) for d in docs]


async def journal(tx: Transaction, account_id: str) -> list[Message]:
    """Every message of the guardian still kept (the message retention bounds them)."""
    docs = await tx.db.notify_messages.find({"guardian_id": account_id},
                                            session=tx.session).to_list(None)
    return [_message(d) for d in docs]


async def held_guardians(db: Any, day: date) -> list[str]:
    """Guardians with messages held for a digest of ``day`` or earlier."""
    docs = await db.notify_messages.find(
        {"status": DeliveryStatus.HELD.value, "digest_day": {"$lte": day.isoformat()}},
        {"guardian_id": 1}).to_list(None)
    return sorted({d["guardian_id"] for d in docs if d.get("guardian_id")})


async def held_messages(tx: Transaction, account_id: str) -> list[Message]:
    docs = await tx.db.notify_messages.find(
        {"guardian_id": account_id, "status": DeliveryStatus.HELD.value},
        session=tx.session).to_list(None)
    return [_message(d) for d in docs]


# -- one-time code counts -------------------------------------------------------------------

async def code_counts(tx: Transaction, phone: str, at: datetime) -> tuple[NumberDay, MinuteTotal]:
    """The number's counts of the day and the service's of the minute (staged: a batch of
    code requests counts each one)."""
    number, minute = buckets_of(phone, at)
    docs = {d["_id"]: d for d in await tx.load_many(tx.db.notify_code_counts,
                                                    [number.key, minute.key])}
    if (doc := docs.get(number.key)) is not None:
        number.hours, number.version = dict(doc["hours"]), doc["version"]
    if (doc := docs.get(minute.key)) is not None:
        minute.count, minute.version = doc["count"], doc["version"]
    return number, minute


async def save_code_counts(tx: Transaction, number: NumberDay, number_loaded: int,
                           minute: MinuteTotal, minute_loaded: int) -> None:
    """Kept two days after their last count (``stored_at``)."""
    tx.stage(tx.db.notify_code_counts, with_stored_at(
        {"_id": number.key, "hours": number.hours, "version": number.version}),
        number_loaded or None, version=number.version)
    tx.stage(tx.db.notify_code_counts, with_stored_at(
        {"_id": minute.key, "count": minute.count, "version": minute.version}),
        minute_loaded or None, version=minute.version)


# -- journeys -------------------------------------------------------------------------------

async def load_journey(tx: Transaction, key: str) -> JourneyDay | None:
    doc = await tx.load(tx.db.notify_journeys, key)
    if not doc:
        return None
    doc = dict(doc)
    doc.pop("_id")
    return JourneyDay.from_doc(doc)


async def save_journey(tx: Transaction, journey: JourneyDay, loaded: int | None) -> None:
    tx.stage(tx.db.notify_journeys, with_stored_at({"_id": journey.key, **journey.to_doc()}),
             loaded, version=journey.version)


async def journey(db: Any, key: str) -> JourneyDay | None:
    doc = await db.notify_journeys.find_one({"_id": key})
    if not doc:
        return None
    doc = dict(doc)
    doc.pop("_id")
    return JourneyDay.from_doc(doc)


# -- push devices as the guardian sees them ---------------------------------------------------

def _instant(value: Any) -> datetime:
    """A stored time: a datetime (naive is UTC) or the ISO string the dev server may keep."""
    at: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


async def push_devices(tx: Transaction, account_id: str) -> dict[str, PushDevice]:
    """The account's push tokens as devices (store key -> device), never the tokens."""
    docs = await tx.db.notify_push_tokens.find(
        {"account_id": account_id}, session=tx.session).to_list(None)
    devices = {}
    for doc in docs:
        last = _instant(doc["at"])
        first = doc.get("registered_ms")
        devices[doc["_id"]] = PushDevice(
            token_hash=doc["_id"].rsplit(":", 1)[-1], platform=doc.get("platform", "android"),
            registered_at=last if first is None else datetime.fromtimestamp(first / 1000, UTC),
            last_used_at=last)
    return devices


async def push_removal(tx: Transaction, account_id: str, request_id: str) -> str | None:
    """The device (token id) a RemovePushToken with ``request_id`` removed, if it did."""
    doc = await tx.db.notify_push_removals.find_one({"_id": f"{account_id}:{request_id}"},
                                                    session=tx.session)
    return doc["token_id"] if doc else None


async def save_push_removal(tx: Transaction, account_id: str, request_id: str,
                            token_id: str) -> None:
    """Remembered a day (``stored_at``): long enough for any retry of the request."""
    await tx.db.notify_push_removals.insert_one(with_stored_at(
        {"_id": f"{account_id}:{request_id}", "token_id": token_id}), session=tx.session)


# -- support requests ---------------------------------------------------------------------------

async def load_ticket(tx: Transaction, ticket_id: str) -> SupportTicket | None:
    doc = await tx.db.notify_support_requests.find_one({"_id": ticket_id}, session=tx.session)
    return SupportTicket.from_doc(ticket_id, doc) if doc else None


async def save_ticket(tx: Transaction, ticket: SupportTicket, loaded: int | None) -> None:
    """Insert (``loaded`` None: a duplicate id is a conflict, retried) or replace if nobody
    wrote since it was loaded."""
    await save_versioned(tx.db.notify_support_requests,
                         {"_id": ticket.ticket_id, **ticket.to_doc()}, loaded,
                         session=tx.session, version=ticket.version)


async def tickets(tx: Transaction, *, account_id: str | None = None,
                  school_id: str | None = None, status: str | None = None,
                  limit: int = 50) -> list[SupportTicket]:
    """Requests by parent or by school (or all, for support), in ``status`` if given, the
    most recently changed first."""
    query: Doc = {}
    if account_id is not None:
        query["account_id"] = account_id
    if school_id is not None:
        query["school_id"] = school_id
    if status is not None:
        query["status"] = status
    docs = await tx.db.notify_support_requests.find(query, session=tx.session).sort(
        [("updated_ms", DESCENDING), ("_id", DESCENDING)]).limit(limit).to_list(None)
    return [SupportTicket.from_doc(d["_id"], d) for d in docs]
