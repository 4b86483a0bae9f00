"""The only module of wallet that talks to MongoDB.

Collections: ``wallet_accounts`` (one document per contract: the Account aggregate with an
optimistic ``version``), ``wallet_ledger`` (immutable entries; unique entry ids make a double
posting impossible), ``wallet_payments`` (payment id -> contract and amount, so a payment id
is never credited to two contracts), ``wallet_schools`` (school-level settings such as the
grace meal), ``wallet_parked_top_ups`` (payments that came before their card's issuance).
The runtime adds ``wallet_inbox`` and ``wallet_outbox``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contracts.integrations import TopUpReceived
from services.runtime.mongo import ConcurrencyError, Transaction, save_versioned
from services.wallet.domain import Account, AccountStatus, LedgerEntry

Doc = dict[str, Any]


class AccountExists(Exception):
    """An account with this contract number is already open."""


class OperationClash(Exception):
    """A ledger entry id already exists on another account: the operation id (sale id, ride
    id, ...) was reused for another contract."""


async def ensure_indexes(db: Any) -> None:
    await db.wallet_accounts.create_indexes([
        IndexModel([("card_uid", ASCENDING)]),
        IndexModel([("school_id", ASCENDING)]),
        IndexModel([("next_bonus_expiry", ASCENDING)]),
    ])
    await db.wallet_parked_top_ups.create_indexes([IndexModel([("contract", ASCENDING)])])
    await db.wallet_ledger.create_indexes([
        IndexModel([("account", ASCENDING), ("at", ASCENDING)]),
        IndexModel([("operation_id", ASCENDING)]),
    ])


async def load_account(tx: Transaction, contract: str) -> Account | None:
    doc = await tx.db.wallet_accounts.find_one({"_id": contract}, session=tx.session)
    return Account.from_doc(_strip(doc)) if doc else None


async def account_by_card(tx: Transaction, card_uid: str) -> Account | None:
    """The account a card pays from: the open one (active or blocked); a closed account only
    when the card has no other (its sales are then declined ``account_closed``)."""
    docs = await tx.db.wallet_accounts.find({"card_uid": card_uid},
                                            session=tx.session).to_list(10)
    docs.sort(key=lambda doc: doc.get("status") == AccountStatus.CLOSED.value)
    return Account.from_doc(_strip(docs[0])) if docs else None


async def accounts_of_school(tx: Transaction, school_id: str) -> list[Account]:
    """Every account of a school, closed ones too (their history stays there): the sales
    report reads the sales and refunds they remember."""
    docs = await tx.db.wallet_accounts.find({"school_id": school_id},
                                            session=tx.session).to_list(None)
    return [Account.from_doc(_strip(doc)) for doc in docs]


async def save_account(tx: Transaction, account: Account, expected_version: int | None) -> None:
    """Insert a new account (``expected_version`` None) or replace it if nobody else wrote
    since it was loaded."""
    doc = {"_id": account.contract, **account.to_doc(),
           # Denormalised for the expiry tick: nx-27017 cannot query into arrays of documents.
           "next_bonus_expiry": min((lot.expires_at for lot in account.bonus_lots
                                     if lot.remaining > 0), default=None)}
    try:
        await save_versioned(tx.db.wallet_accounts, doc, expected_version,
                             session=tx.session, version=account.version)
    except DuplicateKeyError:
        raise AccountExists(account.contract) from None


_DUPLICATE_KEY = 11000


async def append_entries(tx: Transaction, entries: list[LedgerEntry]) -> None:
    """Insert the entries; an entry id already taken (the system leg of the same operation id
    posted for another contract) raises OperationClash. ``insert_many`` reports a duplicate
    key as a BulkWriteError, any other write error is re-raised."""
    if not entries:
        return
    try:
        await tx.db.wallet_ledger.insert_many(
            [{"_id": f"{e.account}:{e.entry_id}", **e.to_doc()} for e in entries],
            session=tx.session)
    except DuplicateKeyError:
        raise OperationClash(entries[0].operation_id) from None
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors") or [{}]
        if any(error.get("code") != _DUPLICATE_KEY for error in errors):
            raise
        raise OperationClash(entries[0].operation_id) from None


async def claim_payment(tx: Transaction, payment_id: str, contract: str, amount: int) -> str | None:
    """Reserve a payment id for one contract and amount across all accounts. Returns None when
    the id is new or was used with the same contract and amount, else the conflict detail."""
    known = await tx.db.wallet_payments.find_one({"_id": payment_id}, session=tx.session)
    if known is None:
        try:
            await tx.db.wallet_payments.insert_one(
                {"_id": payment_id, "contract": contract, "amount": amount, "at": tx.now},
                session=tx.session)
        except DuplicateKeyError:
            raise ConcurrencyError(payment_id) from None  # claimed meanwhile: look again
        return None
    if (known["contract"], known["amount"]) != (contract, amount):
        return "payment id already used with another contract or amount"
    return None


async def park_top_up(tx: Transaction, top_up: TopUpReceived) -> None:
    """Keep a payment for a contract wallet does not know yet (its card issuance is on another
    topic and may be read later); the same payment parked twice is kept once."""
    await tx.db.wallet_parked_top_ups.update_one(
        {"_id": top_up.payment_id},
        {"$setOnInsert": {"contract": top_up.contract, "message": top_up.model_dump(mode="json"),
                          "parked_at": datetime.now(UTC), "parked_ms": time.time_ns() // 10**6}},
        upsert=True, session=tx.session)


async def take_parked_top_ups(tx: Transaction, contract: str) -> list[TopUpReceived]:
    """The payments parked for ``contract``, oldest first, removed from the parking."""
    docs = await tx.db.wallet_parked_top_ups.find({"contract": contract},
                                                  session=tx.session).to_list(None)
    docs.sort(key=lambda doc: (doc["parked_ms"], doc["_id"]))
    if docs:
        await tx.db.wallet_parked_top_ups.delete_many(
            {"_id": {"$in": [doc["_id"] for doc in docs]}}, session=tx.session)
    return [TopUpReceived.model_validate(doc["message"]) for doc in docs]


async def expired_parked_top_ups(db: Any, older_than: datetime, limit: int = 100) -> list[str]:
    """Payment ids parked before ``older_than`` (wall clock): no card came for them."""
    # Compared as epoch milliseconds: the dev server's range queries on datetimes are not
    # reliable for fresh documents (see services/runtime/README.md).
    cutoff = int(older_than.timestamp() * 1000)
    docs = await db.wallet_parked_top_ups.find({"parked_ms": {"$lt": cutoff}},
                                               {"_id": 1}).to_list(limit)
    return [doc["_id"] for doc in docs]


async def unpark_top_up(tx: Transaction, payment_id: str) -> TopUpReceived | None:
    doc = await tx.db.wallet_parked_top_ups.find_one_and_delete({"_id": payment_id},
                                                                session=tx.session)
    return TopUpReceived.model_validate(doc["message"]) if doc else None


async def school_settings(tx: Transaction, school_id: str) -> Doc:
    return await tx.db.wallet_schools.find_one({"_id": school_id}, session=tx.session) or {}


async def set_school_grace_meal(tx: Transaction, school_id: str, max_debt: int) -> int:
    """Record the school's grace-meal bound and apply it to every open account of the school
    (the bound is a school setting copied onto accounts, read by the sale rule). Returns the
    number of accounts changed."""
    await tx.db.wallet_schools.update_one(
        {"_id": school_id}, {"$set": {"grace_meal_max_debt": max_debt, "updated_at": tx.now}},
        upsert=True, session=tx.session)
    result = await tx.db.wallet_accounts.update_many(
        {"school_id": school_id, "status": {"$ne": AccountStatus.CLOSED.value},
         "grace_meal_limit": {"$ne": max_debt}},
        {"$set": {"grace_meal_limit": max_debt}, "$inc": {"version": 1}}, session=tx.session)
    return int(result.modified_count)


async def contracts_with_expired_bonus(db: Any, now: datetime, limit: int = 500) -> list[str]:
    """Contracts holding at least one bonus lot whose expiry has passed (for the daily tick)."""
    cursor = db.wallet_accounts.find({"next_bonus_expiry": {"$lte": now}}, {"_id": 1})
    return [doc["_id"] for doc in await cursor.to_list(limit)]


def _strip(doc: Doc) -> Doc:
    doc = dict(doc)
    doc.pop("_id", None)
    return doc
