"""The only module of transit that talks to MongoDB.

Collections (database ``schoolcard_transit``):

- ``transit_cards``: the projection of the card issuing system, one document per card uid
  (contract, school, status, the card's student concession, blocked by its contract).
- ``transit_contract_blocks``: wallet's block state and the time its transit payments were
  switched off (``payments_off_at``) per contract, so a card issued after its contract was
  blocked or switched off starts on the deny list.
- ``transit_travel``: one ``CardTravel`` aggregate per operator and card
  (``_id = <operator_id>:<card_uid>``) with an optimistic ``version``.
- ``transit_rides``: the ride history read model, one document per ride id (the tap id), with
  the current fare and explanation; it outlives the aggregate's rolling weeks and answers
  ``GetRides`` and the ride id -> aggregate look-up for wallet's outcomes.
- ``transit_fare_rules``: the rules document per operator, from the rules file or from
  ``SetFareRules`` (a command-set version is never overwritten by the file).

Rides are location data. The history lines in ``transit_rides`` expire
``TRANSIT_RIDE_RETENTION_DAYS`` after they were first recorded (a TTL index on ``stored_at``,
the wall-clock time of the insert). The ``CardTravel`` aggregate is not expired: it holds the
card's unpaid fares, and the domain already drops its rides once their week is closed for late
uploads (``late_upload_days`` of the rules), so its ride window is short and bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.errors import DuplicateKeyError

from services.runtime import dialect
from services.runtime.mongo import (
    DAY_S,
    STORED_AT,
    ConcurrencyError,
    Transaction,
    ensure_collections,
    ensure_ttl_index,
    save_versioned,
)
from services.transit.domain import (
    CapKind,
    CardTravel,
    ConcessionEligibility,
    Explanation,
    FareRulebook,
    Mode,
    RideLine,
    RideRecord,
)
from services.transit.domain.pricing import as_utc

Doc = dict[str, Any]




@dataclass(frozen=True)
class Card:
    card_uid: str
    contract: str
    status: str
    closed_at: datetime | None
    concession: ConcessionEligibility | None
    blocked: bool = False
    school_id: str | None = None
    own_blocked_at: datetime | None = None
    payments_off_at: datetime | None = None

    @property
    def payments_off(self) -> bool:
        return self.payments_off_at is not None

    def accepts_tap_at(self, at: datetime) -> bool:
        """A closed (reissued) card still pays for rides taken before it was closed."""
        return self.status == "active" or (self.closed_at is not None and at < self.closed_at)


async def ensure_indexes(db: Any, *, ride_retention_days: int) -> None:
    await ensure_collections(db, "transit_contract_blocks", "transit_fare_rules")
    await dialect.current().create_indexes(
        db.transit_cards, [IndexModel([("contract", ASCENDING)])])
    await dialect.current().create_indexes(db.transit_travel, [
        IndexModel([("card_uid", ASCENDING)]),
        IndexModel([("concession.valid_until", ASCENDING)]),
    ])
    await dialect.current().create_indexes(db.transit_rides, [
        IndexModel([("contract", ASCENDING), ("local_day", ASCENDING)]),
        IndexModel([("card_uid", ASCENDING)]),
    ])
    await ensure_ttl_index(db.transit_rides, STORED_AT, ride_retention_days * DAY_S)


# --- fare rules ------------------------------------------------------------------------------

def _digest(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


async def seed_rules(db: Any, books: Mapping[str, FareRulebook], now: datetime) -> None:
    """Write the rules file's operators, unless a command already set that operator's rules
    or the same rules are stored already (a restart rewrites nothing, ``updated_at`` says when
    the rules last changed)."""
    for operator_id, book in books.items():
        doc = book.to_doc()
        digest = _digest(doc)
        # set by a command already, or unchanged (duplicate key): nothing to write
        with contextlib.suppress(DuplicateKeyError):
            await db.transit_fare_rules.update_one(
                {"_id": operator_id, "source": {"$ne": "command"}, "digest": {"$ne": digest}},
                {"$set": {"source": "file", "version": 0, "rules": doc, "digest": digest,
                          "updated_at": now}},
                upsert=True)


FARE_RULES = "fare_rules"
"""What ``tx.cached`` holds of the operators' fare rules (read by every tap of a batch)."""


async def rulebook(tx: Transaction, operator_id: str) -> FareRulebook | None:
    doc = await tx.cached(FARE_RULES, operator_id, lambda: tx.db.transit_fare_rules.find_one(
        {"_id": operator_id}, session=tx.session))
    return FareRulebook.from_doc(doc["rules"]) if doc else None


async def rules_version(tx: Transaction, operator_id: str) -> tuple[int, str] | None:
    """(version, digest of the rules) as stored, or None."""
    doc = await tx.db.transit_fare_rules.find_one({"_id": operator_id}, session=tx.session)
    if doc is None or doc.get("source") != "command":
        return None
    return doc["version"], doc["digest"]


def rules_digest(book: FareRulebook) -> str:
    return _digest(book.to_doc())


async def save_rules(tx: Transaction, book: FareRulebook, version: int) -> None:
    tx.forget(FARE_RULES)
    doc = book.to_doc()
    await tx.db.transit_fare_rules.replace_one(
        {"_id": book.operator_id}, dialect.current().upsert_replacement(book.operator_id, {
            "source": "command", "version": version, "rules": doc, "digest": _digest(doc),
            "updated_at": tx.now}),
        upsert=True, session=tx.session)


# --- cards -----------------------------------------------------------------------------------

def _card(doc: Doc) -> Card:
    concession = doc.get("concession")
    closed = doc.get("closed_at")
    return Card(doc["_id"], doc["contract"], doc["status"],
                dialect.current().read_instant(closed) if closed else None,
                ConcessionEligibility.from_doc(concession) if concession else None,
                doc.get("blocked", False), doc.get("school_id"),
                _instant(doc.get("own_blocked_at")), _instant(doc.get("payments_off_at")))


def _instant(value: Any) -> datetime | None:
    return dialect.current().read_instant(value) if value else None


async def card(tx: Transaction, card_uid: str) -> Card | None:
    doc = await tx.db.transit_cards.find_one({"_id": card_uid}, session=tx.session)
    return _card(doc) if doc else None


async def cards_of(tx: Transaction, contract: str) -> list[Card]:
    docs = await tx.db.transit_cards.find({"contract": contract},
                                          session=tx.session).to_list(None)
    return [_card(d) for d in docs]


async def save_card(tx: Transaction, card_uid: str, contract: str, school_id: str,
                    school_tz: str, concession: ConcessionEligibility | None = None) -> None:
    """Create or re-activate a card; an existing card keeps its concession unless given."""
    update: Doc = {"$set": {"contract": contract, "school_id": school_id, "school_tz": school_tz,
                            "status": "active", "closed_at": None}}
    if concession is not None:
        update["$set"]["concession"] = concession.to_doc()
    else:
        update["$setOnInsert"] = {"concession": None}
    await tx.db.transit_cards.update_one({"_id": card_uid}, update, upsert=True,
                                         session=tx.session)


async def close_card(tx: Transaction, card_uid: str, at: datetime) -> None:
    """One card replaced (a virtual card's new uid): closed like a reissued card."""
    await tx.db.transit_cards.update_one(
        {"_id": card_uid, "status": "active"},
        {"$set": {"status": "closed", "closed_at": at}}, session=tx.session)


async def set_own_block(tx: Transaction, card_uid: str, contract: str,
                        blocked_at: datetime | None) -> None:
    """Block (``blocked_at``) or unblock (None) one card on its own. The block may come before
    the card's issuance (another topic): the card document starts with the contract then."""
    await tx.db.transit_cards.update_one(
        {"_id": card_uid},
        {"$set": {"own_blocked_at": dialect.current().instant(blocked_at)
                  if blocked_at is not None else None, "blocked": blocked_at is not None},
         "$setOnInsert": {"contract": contract, "status": "active", "closed_at": None,
                          "concession": None}},
        upsert=True, session=tx.session)


async def close_cards(tx: Transaction, contract: str, at: datetime) -> None:
    await tx.db.transit_cards.update_many(
        {"contract": contract, "status": "active"},
        {"$set": {"status": "closed", "closed_at": at}}, session=tx.session)


async def set_cards_blocked(tx: Transaction, contract: str, blocked: bool) -> None:
    """The contract's block state on its cards; an unblock leaves cards blocked on their own."""
    await tx.db.transit_contract_blocks.update_one(
        {"_id": contract}, {"$set": {"blocked": blocked}}, upsert=True, session=tx.session)
    query: Doc = {"contract": contract}
    if not blocked:
        free = [c.card_uid for c in await cards_of(tx, contract) if c.own_blocked_at is None]
        query = {"_id": {"$in": free}}
    await tx.db.transit_cards.update_many(query, {"$set": {"blocked": blocked}},
                                          session=tx.session)


async def contract_blocked(tx: Transaction, contract: str) -> bool:
    doc = await tx.db.transit_contract_blocks.find_one({"_id": contract}, session=tx.session)
    return bool(doc and doc.get("blocked"))


async def set_payments_off(tx: Transaction, contract: str, off_at: datetime | None) -> None:
    """Transit payments of the contract switched off at ``off_at``, or on (None), on the
    contract and on each of its cards. Switching off again keeps the first time: taps since
    then stay refused."""
    if off_at is not None:
        off_at = await payments_off_at(tx, contract) or off_at
    at = dialect.current().instant(off_at) if off_at is not None else None
    await tx.db.transit_contract_blocks.update_one(
        {"_id": contract}, {"$set": {"payments_off_at": at}}, upsert=True, session=tx.session)
    changed = [c.card_uid for c in await cards_of(tx, contract)
               if off_at is None or c.payments_off_at is None]
    await tx.db.transit_cards.update_many({"_id": {"$in": changed}},
                                          {"$set": {"payments_off_at": at}}, session=tx.session)


async def carry_payments_off(tx: Transaction, old_contract: str, new_contract: str) -> None:
    """A reissue: the new contract keeps the old one's switch, as wallet's account does (its
    cards are denied by the caller)."""
    off_at = await payments_off_at(tx, old_contract)
    if off_at is not None:
        await tx.db.transit_contract_blocks.update_one(
            {"_id": new_contract},
            {"$set": {"payments_off_at": dialect.current().instant(off_at)}},
            upsert=True, session=tx.session)


async def payments_off_at(tx: Transaction, contract: str) -> datetime | None:
    doc = await tx.db.transit_contract_blocks.find_one({"_id": contract}, session=tx.session)
    return _instant(doc.get("payments_off_at")) if doc else None


async def travels_of_rides(tx: Transaction, ride_ids: Iterable[str]) -> list[CardTravel]:
    """The travel aggregates that hold these rides (a debt may be paid by another contract's
    top-up after a card reissue)."""
    refs = await tx.db.transit_rides.find({"_id": {"$in": list(ride_ids)}},
                                          {"aggregate_id": 1}, session=tx.session).to_list(None)
    ids = sorted({r["aggregate_id"] for r in refs})
    if not ids:
        return []
    docs = await tx.db.transit_travel.find({"_id": {"$in": ids}},
                                           session=tx.session).to_list(None)
    return [_travel(d) for d in docs]


async def set_card_concession(tx: Transaction, card_uids: Iterable[str],
                              concession: ConcessionEligibility) -> None:
    await tx.db.transit_cards.update_many({"_id": {"$in": list(card_uids)}},
                                          {"$set": {"concession": concession.to_doc()}},
                                          session=tx.session)


# --- card travel -----------------------------------------------------------------------------

def _travel(doc: Doc) -> CardTravel:
    body = {k: v for k, v in doc.items() if k != "_id"}
    return CardTravel.from_doc(body)


async def load_travel(tx: Transaction, aggregate_id: str) -> CardTravel | None:
    doc = await tx.db.transit_travel.find_one({"_id": aggregate_id}, session=tx.session)
    return _travel(doc) if doc else None


async def travels_of_cards(tx: Transaction, card_uids: Iterable[str]) -> list[CardTravel]:
    docs = await tx.db.transit_travel.find({"card_uid": {"$in": list(card_uids)}},
                                           session=tx.session).to_list(None)
    return [_travel(d) for d in docs]


async def save_travel(tx: Transaction, travel: CardTravel, loaded_version: int | None) -> None:
    """Insert a new aggregate (``loaded_version`` None) or replace it if nobody else wrote
    since it was loaded."""
    try:
        await save_versioned(tx.db.transit_travel,
                             {"_id": travel.aggregate_id, **travel.to_doc()}, loaded_version,
                             session=tx.session)
    except DuplicateKeyError:  # created meanwhile by another writer
        raise ConcurrencyError(travel.aggregate_id) from None


async def reminder_candidates(db: Any, first: date, last: date, limit: int) -> list[str]:
    """Aggregate ids whose concession ends between ``first`` and ``last`` and whose reminder
    for that date was not sent yet (the domain decides the exact day)."""
    docs = await db.transit_travel.find(
        {"concession.valid_until": {"$gte": first.isoformat(), "$lte": last.isoformat()}},
        {"_id": 1, "concession": 1, "concession_reminded_for": 1},
    ).to_list(limit * 4)
    due = [d["_id"] for d in docs
           if d.get("concession_reminded_for") != d["concession"]["valid_until"]]
    return due[:limit]


@dataclass(frozen=True)
class CardReminder:
    """What the reminder of a card that may never have ridden needs."""

    card_uid: str
    contract: str
    school_tz: str
    concession: ConcessionEligibility | None
    reminded_for: date | None
    rode: bool  # the card has a travel aggregate (with some operator): that one reminds


async def card_reminder_candidates(db: Any, first: date, last: date, limit: int) -> list[str]:
    """Active cards whose concession ends between ``first`` and ``last`` and whose card-level
    reminder for that date is not recorded yet (``reminder_candidates`` for travels)."""
    docs = await db.transit_cards.find(
        {"status": "active",
         "concession.valid_until": {"$gte": first.isoformat(), "$lte": last.isoformat()}},
        {"_id": 1, "concession": 1, "concession_reminded_for": 1},
    ).to_list(limit * 4)
    due = [d["_id"] for d in docs
           if d.get("concession_reminded_for") != d["concession"]["valid_until"]]
    return due[:limit]


async def card_reminder(tx: Transaction, card_uid: str) -> CardReminder | None:
    doc = await tx.db.transit_cards.find_one({"_id": card_uid}, session=tx.session)
    if doc is None:
        return None
    travel = await tx.db.transit_travel.find_one({"card_uid": card_uid}, {"_id": 1},
                                                 session=tx.session)
    reminded = doc.get("concession_reminded_for")
    return CardReminder(card_uid, doc["contract"], doc["school_tz"], _card(doc).concession,
                        date.fromisoformat(reminded) if reminded else None, travel is not None)


async def mark_card_reminded(tx: Transaction, card_uid: str, valid_until: date) -> None:
    """The card-level reminder for ``valid_until`` is done (sent, or left to the travel)."""
    await tx.db.transit_cards.update_one(
        {"_id": card_uid}, {"$set": {"concession_reminded_for": valid_until.isoformat()}},
        session=tx.session)


# --- rides (read model) ----------------------------------------------------------------------

@dataclass(frozen=True)
class RideRef:
    ride_id: str
    aggregate_id: str
    contract: str


async def ride(tx: Transaction, ride_id: str) -> RideRef | None:
    doc = await tx.db.transit_rides.find_one({"_id": ride_id},
                                             {"aggregate_id": 1, "contract": 1},
                                             session=tx.session)
    return RideRef(ride_id, doc["aggregate_id"], doc["contract"]) if doc else None


def _ride_fields(r: RideRecord) -> Doc:
    return {
        "fare": r.fare,
        "explanation": (Explanation.CORRECTED_LATE_UPLOAD if r.corrected
                        else r.explanation).value,
        "priced_as": r.explanation.value,
        "cap": None if r.cap is None else r.cap.value,
        "first_fare": r.first_fare,
        "rules_version": r.rules_version,
        "debit_status": r.debit_status.value,
    }


async def save_rides(tx: Transaction, travel: CardTravel, ride_ids: Iterable[str],
                     contract: str, time_zone: str) -> None:
    """Upsert the history lines of ``ride_ids``; a line keeps the contract it was first
    recorded under (a reissued card's old rides stay on the old contract)."""
    ops = []
    for ride_id in ride_ids:
        r = travel.rides.get(ride_id)
        if r is None:
            continue
        ops.append(UpdateOne(
            {"_id": ride_id},
            {"$set": _ride_fields(r),
             "$setOnInsert": {
                 "aggregate_id": travel.aggregate_id, "contract": contract,
                 "card_uid": travel.card_uid, "operator_id": travel.operator_id,
                 "tapped_at": r.tap.tapped_at, "local_day": r.local_day.isoformat(),
                 "time_zone": time_zone, "route": r.tap.route, "stop": r.tap.stop,
                 "mode": r.tap.mode.value, "validator_id": r.tap.validator_id,
                 "vehicle_id": r.tap.vehicle_id, "offline": r.tap.offline,
                 "recorded_at": tx.now, STORED_AT: datetime.now(UTC)}},
            upsert=True))
    if ops:
        await tx.db.transit_rides.bulk_write(ops, ordered=True, session=tx.session)


async def rides_of(tx: Transaction, contract: str, day_from: str | None,
                   day_to: str | None) -> list[RideLine]:
    """The contract's rides in the period by (tapped_at, ride id); the ride retention bounds
    how many there are."""
    query: Doc = {"contract": contract}
    days: Doc = {}
    if day_from:
        days["$gte"] = day_from
    if day_to:
        days["$lte"] = day_to
    if days:
        query["local_day"] = days
    docs = await tx.db.transit_rides.find(query, session=tx.session).sort(
        [("tapped_at", ASCENDING), ("_id", ASCENDING)]).to_list(None)
    return sorted((ride_line(doc) for doc in docs),
                  key=lambda line: (line.tapped_at, line.ride_id))


def ride_line(doc: Doc) -> RideLine:
    """A history line of the read model, in the city's local time of the ride."""
    tapped_at = as_utc(doc["tapped_at"])
    return RideLine(
        ride_id=doc["_id"], tapped_at=tapped_at,
        local_time=tapped_at.astimezone(ZoneInfo(doc["time_zone"])), route=doc["route"],
        stop=doc["stop"], mode=Mode(doc["mode"]), fare=doc["fare"],
        explanation=Explanation(doc["explanation"]), priced_as=Explanation(doc["priced_as"]),
        cap=None if doc["cap"] is None else CapKind(doc["cap"]))


async def max_reminder_days(db: Any) -> int:
    """The longest concession reminder period over all operators' rules (0 without rules)."""
    docs = await db.transit_fare_rules.find(
        {}, dialect.current().projection("rules.concession_reminder_days")).to_list(None)
    return max((d["rules"]["concession_reminder_days"] for d in docs), default=0)
