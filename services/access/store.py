"""The only module of access that talks to MongoDB.

Collections (database ``schoolcard_access``), each document the ``to_doc()`` of a domain object
with a natural ``_id`` and an optimistic ``version``:

- ``access_cards``: the card projection, ``_id`` = card uid (from card issuance and wallet).
- ``access_contracts``: contract -> card uids, the contract's last block state, reissue link.
- ``access_schedules``: one school's timetable, ``_id`` = school id.
- ``access_taps``: the decision recorded per tap, ``_id`` = tap id (the idempotency record).
- ``access_days``: one student's local school day, ``_id`` = ``"<contract>:<YYYY-MM-DD>"``.
- ``access_sweeps``: markers of the periodic jobs done, ``_id`` = ``"<school>:<day>:<kind>"``.

Gate taps and attendance days expire (TTL indexes, ``ACCESS_GATE_TAP_RETENTION_DAYS`` and
``ACCESS_ATTENDANCE_RETENTION_DAYS``) counted from ``stored_at``, the wall-clock time of the
last write (a tap's own time may be days old when an offline gate uploads it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from pymongo import ASCENDING, IndexModel

from services.access.domain import (
    AttendanceDay,
    CardRecord,
    ContractCards,
    SchoolSchedule,
    Student,
    TapRecord,
    roster,
)
from services.access.domain.common import date_to_doc
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


async def ensure_indexes(db: Any, *, attendance_retention_days: int,
                         gate_tap_retention_days: int) -> None:
    await ensure_collections(db, "access_contracts", "access_schedules", "access_sweeps")
    await dialect.current().create_indexes(db.access_cards, [
        IndexModel([("contract", ASCENDING)], name="card_contract"),
        IndexModel([("school_id", ASCENDING), ("class_name", ASCENDING)], name="card_school"),
    ])
    await dialect.current().create_indexes(db.access_days, [
        IndexModel([("school_id", ASCENDING), ("day", ASCENDING), ("class_name", ASCENDING)],
                   name="day_school_class"),
        IndexModel([("contract", ASCENDING), ("day", ASCENDING)], name="day_contract"),
    ])
    await dialect.current().create_indexes(db.access_taps, [
        IndexModel([("card_uid", ASCENDING), ("tapped_at", ASCENDING)], name="tap_card"),
    ])
    await ensure_ttl_index(db.access_days, STORED_AT, attendance_retention_days * DAY_S)
    await ensure_ttl_index(db.access_taps, STORED_AT, gate_tap_retention_days * DAY_S)


# --- generic optimistic save -----------------------------------------------------------------

async def _save(tx: Transaction, collection: str, _id: str, doc: Doc,
                loaded: int | None) -> None:
    await save_versioned(tx.db[collection], {"_id": _id, **doc}, loaded, session=tx.session)


def _strip(doc: Doc) -> Doc:
    doc = dict(doc)
    doc.pop("_id", None)
    return doc


# --- cards and contracts ---------------------------------------------------------------------

async def load_card(tx: Transaction, card_uid: str) -> CardRecord | None:
    doc = await tx.db.access_cards.find_one({"_id": card_uid}, session=tx.session)
    return CardRecord.from_doc(doc) if doc else None


async def load_cards(tx: Transaction, card_uids: Iterable[str]) -> list[CardRecord]:
    docs = await tx.db.access_cards.find({"_id": {"$in": list(card_uids)}},
                                         session=tx.session).to_list(None)
    return [CardRecord.from_doc(d) for d in docs]


async def save_card(tx: Transaction, card: CardRecord, loaded: int | None) -> None:
    await _save(tx, "access_cards", card.card_uid, card.to_doc(), loaded)


async def load_contract(tx: Transaction, contract: str) -> ContractCards | None:
    doc = await tx.db.access_contracts.find_one({"_id": contract}, session=tx.session)
    return ContractCards.from_doc(doc) if doc else None


async def save_contract(tx: Transaction, link: ContractCards, loaded: int | None) -> None:
    await _save(tx, "access_contracts", link.contract, link.to_doc(), loaded)


async def students(tx: Transaction, school_id: str,
                   class_name: str | None = None) -> list[Student]:
    """The roster of a school (or of one class) from the card projection."""
    query: Doc = {"school_id": school_id}
    if class_name is not None:
        query["class_name"] = class_name
    return await _roster(tx, query)


async def student(tx: Transaction, contract: str) -> Student | None:
    """The student of a contract (None: no card issued, or the contract was reissued)."""
    found = await _roster(tx, {"contract": contract})
    return found[0] if found else None


async def _roster(tx: Transaction, query: Doc) -> list[Student]:
    cards = [CardRecord.from_doc(d) for d in
             await tx.db.access_cards.find(query, session=tx.session).to_list(None)]
    if not cards:
        return []
    found = sorted({c.contract for c in cards if c.contract})
    retired = {d["_id"] for d in await tx.db.access_contracts.find(
        {"_id": {"$in": found}, "replaced_by": {"$ne": None}}, {"_id": 1},
        session=tx.session).to_list(None)}
    return roster(cards, retired)


async def cards_of_contract(tx: Transaction, contract: str) -> list[CardRecord]:
    docs = await tx.db.access_cards.find({"contract": contract}, session=tx.session).to_list(None)
    return [CardRecord.from_doc(d) for d in docs]


# --- schedules -------------------------------------------------------------------------------

SCHEDULES = "schedules"
"""What ``tx.cached`` holds of the schools' timetables (read by every tap of a batch)."""


async def load_schedule(tx: Transaction, school_id: str) -> SchoolSchedule | None:
    doc = await tx.cached(SCHEDULES, school_id, lambda: tx.db.access_schedules.find_one(
        {"_id": school_id}, session=tx.session))
    return SchoolSchedule.from_doc(doc) if doc else None


async def save_schedule(tx: Transaction, schedule: SchoolSchedule, loaded: int | None) -> None:
    tx.forget(SCHEDULES)
    await _save(tx, "access_schedules", schedule.school_id, schedule.to_doc(), loaded)


async def all_schedules(db: Any) -> list[SchoolSchedule]:
    return [SchoolSchedule.from_doc(d) for d in await db.access_schedules.find({}).to_list(None)]


# --- taps ------------------------------------------------------------------------------------

async def load_tap(tx: Transaction, tap_id: str) -> TapRecord | None:
    doc = await tx.db.access_taps.find_one({"_id": tap_id}, session=tx.session)
    return TapRecord.from_doc(doc) if doc else None


async def insert_tap(tx: Transaction, record: TapRecord) -> None:
    await tx.db.access_taps.insert_one(with_stored_at({"_id": record.tap_id, **record.to_doc()}),
                                       session=tx.session)


# --- attendance days -------------------------------------------------------------------------

async def load_day(tx: Transaction, key: str) -> AttendanceDay | None:
    doc = await tx.db.access_days.find_one({"_id": key}, session=tx.session)
    return AttendanceDay.from_doc(doc) if doc else None


async def load_days(tx: Transaction, keys: Iterable[str]) -> dict[str, AttendanceDay]:
    docs = await tx.db.access_days.find({"_id": {"$in": list(keys)}},
                                        session=tx.session).to_list(None)
    return {d["_id"]: AttendanceDay.from_doc(d) for d in docs}


async def days_of_class(tx: Transaction, school_id: str, class_name: str,
                        day: date) -> dict[str, AttendanceDay]:
    docs = await tx.db.access_days.find(
        {"school_id": school_id, "day": date_to_doc(day), "class_name": class_name},
        session=tx.session).to_list(None)
    return {d["_id"]: AttendanceDay.from_doc(d) for d in docs}


async def open_days(tx: Transaction, school_id: str, day: date,
                    limit: int) -> list[AttendanceDay]:
    docs = await tx.db.access_days.find(
        {"school_id": school_id, "day": date_to_doc(day), "closed_at": None},
        session=tx.session).sort("_id", ASCENDING).to_list(None)
    # Days without passages (absence markers) are never closed; skip them here.
    days = [AttendanceDay.from_doc(d) for d in docs if d.get("passages")]
    return days[:limit]


async def days_of_student(tx: Transaction, contract: str, start: date,
                          end: date) -> list[AttendanceDay]:
    docs = await tx.db.access_days.find(
        {"contract": contract, "day": {"$gte": date_to_doc(start), "$lte": date_to_doc(end)}},
        session=tx.session).to_list(None)
    return [AttendanceDay.from_doc(d) for d in docs]


async def save_day(tx: Transaction, day: AttendanceDay, loaded: int | None) -> None:
    await _save(tx, "access_days", day.key, with_stored_at(day.to_doc()), loaded)


async def save_days(tx: Transaction, changed: Iterable[AttendanceDay],
                    loaded: dict[str, int]) -> None:
    """New day records in one insert_many; changed ones replaced with their version check."""
    days = list(changed)
    fresh = [with_stored_at({"_id": d.key, **d.to_doc()}) for d in days if d.key not in loaded]
    if fresh:
        await tx.db.access_days.insert_many(fresh, session=tx.session)
    for day in days:
        if day.key in loaded:
            await save_day(tx, day, loaded[day.key])


# --- sweep markers ---------------------------------------------------------------------------

async def sweeps_done(db: Any, ids: Iterable[str]) -> set[str]:
    return {d["_id"] for d in await db.access_sweeps.find({"_id": {"$in": list(ids)}},
                                                          {"_id": 1}).to_list(None)}


async def mark_sweep_done(tx: Transaction, sweep_id: str) -> None:
    await tx.db.access_sweeps.replace_one(
        {"_id": sweep_id}, dialect.current().upsert_replacement(sweep_id, {"at": tx.now}),
        upsert=True, session=tx.session)
