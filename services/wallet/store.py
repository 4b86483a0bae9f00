"""The only module of wallet that talks to MongoDB.

Collections: ``wallet_accounts`` (one document per contract: the Account aggregate with an
optimistic ``version``; balances, controls and the open records only), ``wallet_operations``
(every operation record of every account, one document each, append-mostly: the history the
statement and the sales report read, and the records a message names by key),
``wallet_ledger`` (immutable entries; unique entry ids make a double
posting impossible), ``wallet_payments`` (payment id -> contract and amount, so a payment id
is never credited to two contracts), ``wallet_schools`` (school-level settings such as the
grace meal), ``wallet_parked_top_ups`` (payments that came before their card's issuance),
``wallet_line_tags`` (the family's tags on a statement line, ``_id`` = ``<contract>:<operation
id>``, one small document per tagged line) and ``wallet_top_up_templates`` (one child's saved
top-ups, ``_id`` = contract, at most ten, with an optimistic ``version``): both apart from the
account document, which stays small and is not rewritten (nor conflicted) by them.
The runtime adds ``wallet_inbox`` and ``wallet_outbox``.

The times compared as ranges, an operation's ``at_ms`` and a parked payment's ``parked_ms``,
hold the dialect's instant (``services/runtime/dialect.py``): a datetime on MongoDB, epoch
milliseconds on the dev server (where the fields got their names).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, ReplaceOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contracts.integrations import TopUpReceived
from services.runtime import dialect
from services.runtime.mongo import (
    ConcurrencyError,
    Transaction,
    ensure_collections,
    save_versioned,
)
from services.wallet.domain import (
    Account,
    AccountStatus,
    Application,
    LedgerEntry,
    LineTags,
    TopUpTemplates,
)

Doc = dict[str, Any]
# The records a message names, by kind (``{"sales": [sale_id]}``): loaded with the account.
Wants = Mapping[str, Iterable[str]]

# Each loaded account's records as they were read: saving writes only what changed since.
_AS_LOADED: weakref.WeakKeyDictionary[Account, dict[str, Doc]] = weakref.WeakKeyDictionary()


class AccountExists(Exception):
    """An account with this contract number is already open."""


class OperationClash(Exception):
    """A ledger entry id already exists on another account: the operation id (sale id, ride
    id, ...) was reused for another contract."""


async def ensure_indexes(db: Any) -> None:
    await ensure_collections(db, "wallet_payments", "wallet_schools")
    await dialect.current().create_indexes(db.wallet_accounts, [
        IndexModel([("card_uid", ASCENDING)]),
        IndexModel([("school_id", ASCENDING)]),
        IndexModel([("next_bonus_expiry", ASCENDING)]),
        IndexModel([("next_scheduled_due_ms", ASCENDING)]),
    ])
    await dialect.current().create_indexes(db.wallet_applications, [
        IndexModel([("contract", ASCENDING)]),
        IndexModel([("school_id", ASCENDING)]),
    ])
    await dialect.current().create_indexes(
        db.wallet_parked_top_ups, [IndexModel([("contract", ASCENDING)])])
    await dialect.current().create_indexes(db.wallet_operations, [
        IndexModel([("contract", ASCENDING), ("kind", ASCENDING), ("at_ms", ASCENDING)]),
        IndexModel([("school_id", ASCENDING), ("day", ASCENDING), ("kind", ASCENDING)]),
    ])
    await dialect.current().create_indexes(
        db.wallet_line_tags, [IndexModel([("contract", ASCENDING)])])
    await ensure_collections(db, "wallet_top_up_templates")
    await dialect.current().create_indexes(db.wallet_ledger, [
        IndexModel([("account", ASCENDING), ("at", ASCENDING)]),
        IndexModel([("operation_id", ASCENDING)]),
    ])


async def load_account(tx: Transaction, contract: str, wants: Wants | None = None, *,
                       rides_since: datetime | None = None) -> Account | None:
    """The account with its open records and the records ``wants`` names (a key not found is
    known to be new); with ``rides_since``, also every ride from that instant on."""
    doc = await tx.db.wallet_accounts.find_one({"_id": contract}, session=tx.session)
    return await _with_records(tx, doc, wants, rides_since) if doc else None


async def account_by_card(tx: Transaction, card_uid: str,
                          wants: Wants | None = None) -> Account | None:
    """The account a card pays from: the open one (active or blocked); a closed account only
    when the card has no other (its sales are then declined ``account_closed``)."""
    docs = await tx.db.wallet_accounts.find({"card_uid": card_uid},
                                            session=tx.session).to_list(10)
    docs.sort(key=lambda doc: doc.get("status") == AccountStatus.CLOSED.value)
    return await _with_records(tx, docs[0], wants) if docs else None


async def load_records(tx: Transaction, account: Account, wants: Wants) -> None:
    """Load more records named by key into ``account`` (a second step, when a first record
    says which others it needs, as a dispute names its sale)."""
    found, absent = await _find(tx, account.contract, wants)
    account.add_records([(row["kind"], row["record"]) for row in found], absent)
    ids = {row["_id"] for row in found}
    as_loaded = _AS_LOADED.setdefault(account, {})
    for row in account.history():
        rid = _operation_id(account.contract, row.kind, row.key)
        if rid in ids:
            as_loaded[rid] = row.plain


async def _find(tx: Transaction, contract: str, wants: Wants | None,
                rides_since: datetime | None = None) -> tuple[list[Doc], dict[str, set[str]]]:
    """The stored records ``wants`` names (and the rides since ``rides_since``), and the
    named keys not found."""
    wanted = {(kind, key) for kind, keys in (wants or {}).items() for key in keys}
    found: list[Doc] = []
    if wanted:
        ids = [_operation_id(contract, kind, key) for kind, key in wanted]
        found = await tx.db.wallet_operations.find({"_id": {"$in": ids}},
                                                   session=tx.session).to_list(None)
    if rides_since is not None:
        found += await tx.db.wallet_operations.find(
            {"contract": contract, "kind": "rides", "at_ms": {"$gte": _ms(rides_since)}},
            session=tx.session).to_list(None)
    absent: dict[str, set[str]] = {}
    for kind, key in wanted - {(row["kind"], row["key"]) for row in found}:
        absent.setdefault(kind, set()).add(key)
    return found, absent


async def _with_records(tx: Transaction, doc: Doc, wants: Wants | None,
                        rides_since: datetime | None = None) -> Account:
    contract = doc["_id"]
    found, absent = await _find(tx, contract, wants, rides_since)
    account = Account.from_doc(_strip(doc), [(row["kind"], row["record"]) for row in found],
                               absent=absent)
    # A document of the earlier layout (records inside) loads complete: none of its records
    # is stored apart yet, so its next save writes them all.
    _AS_LOADED[account] = {} if account.sales.complete else {
        _operation_id(contract, row.kind, row.key): row.plain for row in account.history()}
    return account


async def load_history(tx: Transaction, contract: str) -> Account | None:
    """The account with every record it ever had (for the statement; read only)."""
    doc = await tx.db.wallet_accounts.find_one({"_id": contract}, session=tx.session)
    if doc is None:
        return None
    rows = await tx.db.wallet_operations.find({"contract": contract},
                                              session=tx.session).to_list(None)
    return Account.from_doc(_strip(doc), [(row["kind"], row["record"]) for row in rows],
                            complete=True)


async def sales_of_school_day(tx: Transaction, school_id: str, day: str) -> list[Account]:
    """The accounts of a school holding that school-local day's sales and refunds (and the
    sales those refunds reverse), for the sales report; read only."""
    rows = []
    for kind in ("sales", "sale_refunds"):
        rows += await tx.db.wallet_operations.find(
            {"school_id": school_id, "day": day, "kind": kind},
            session=tx.session).to_list(None)
    refunded = [_operation_id(row["contract"], "sales", row["record"]["sale_id"])
                for row in rows if row["kind"] == "sale_refunds"]
    if refunded:
        seen = {row["_id"] for row in rows}
        rows += [row for row in await tx.db.wallet_operations.find(
            {"_id": {"$in": refunded}}, session=tx.session).to_list(None)
            if row["_id"] not in seen]
    by_contract: dict[str, list[tuple[str, Doc]]] = {}
    for row in rows:
        by_contract.setdefault(row["contract"], []).append((row["kind"], row["record"]))
    docs = await tx.db.wallet_accounts.find({"_id": {"$in": sorted(by_contract)}},
                                            session=tx.session).to_list(None)
    return [Account.from_doc(_strip(doc), by_contract[doc["_id"]]) for doc in docs]


async def save_account(tx: Transaction, account: Account, expected_version: int | None) -> None:
    """Insert a new account (``expected_version`` None) or replace it if nobody else wrote
    since it was loaded."""
    doc = {"_id": account.contract, **account.to_doc(),
           # Denormalised and indexed for the expiry tick (see services/runtime/dialect.py).
           "next_bonus_expiry": min((lot.expires_at for lot in account.bonus_lots
                                     if lot.remaining > 0), default=None),
           # The scheduler's index: when the next due date of the autopay by date begins.
           "next_scheduled_due_ms": _due_ms(account.next_scheduled_due_at())}
    try:
        await save_versioned(tx.db.wallet_accounts, doc, expected_version,
                             session=tx.session, version=account.version)
    except DuplicateKeyError:
        raise AccountExists(account.contract) from None
    await _save_history(tx, account)


async def _save_history(tx: Transaction, account: Account) -> None:
    """Write the records that are new or changed since the account was loaded."""
    as_loaded = _AS_LOADED.setdefault(account, {})
    upsert = dialect.current().upsert_replacement
    writes = []
    for row in account.history():
        rid = _operation_id(account.contract, row.kind, row.key)
        if as_loaded.get(rid) == row.plain:
            continue
        as_loaded[rid] = row.plain
        writes.append(ReplaceOne({"_id": rid}, upsert(rid, {
            "contract": account.contract, "kind": row.kind, "key": row.key,
            "at_ms": _ms(row.at), "day": row.day, "school_id": account.school_id,
            "open": row.open, "record": row.plain}), upsert=True))
    if writes:
        await tx.db.wallet_operations.bulk_write(writes, ordered=False, session=tx.session)


def _operation_id(contract: str, kind: str, key: str) -> str:
    return f"{contract}:{kind}:{key}"


def _ms(at: datetime) -> Any:
    """``at`` as stored in and compared with ``at_ms`` and ``parked_ms`` (the dialect's
    instant)."""
    return dialect.current().instant(at)


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
                          "parked_ms": _ms(datetime.now(UTC))}},
        upsert=True, session=tx.session)


async def take_parked_top_ups(tx: Transaction, contract: str) -> list[TopUpReceived]:
    """The payments parked for ``contract``, oldest first, removed from the parking."""
    docs = await tx.db.wallet_parked_top_ups.find({"contract": contract},
                                                  session=tx.session).to_list(None)
    read = dialect.current().read_instant
    docs.sort(key=lambda doc: (read(doc["parked_ms"]), doc["_id"]))
    if docs:
        await tx.db.wallet_parked_top_ups.delete_many(
            {"_id": {"$in": [doc["_id"] for doc in docs]}}, session=tx.session)
    return [TopUpReceived.model_validate(doc["message"]) for doc in docs]


async def expired_parked_top_ups(db: Any, older_than: datetime, limit: int = 100) -> list[str]:
    """Payment ids parked before ``older_than`` (wall clock): no card came for them."""
    docs = await db.wallet_parked_top_ups.find({"parked_ms": {"$lt": _ms(older_than)}},
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


# --- statement line tags ---------------------------------------------------------------

async def operation_kinds(tx: Transaction, contract: str, operation_id: str) -> set[str]:
    """The kinds of record the account holds under ``operation_id`` (a ride collected later
    and its refund are separate kinds)."""
    rows = await tx.db.wallet_operations.find({"contract": contract, "key": operation_id},
                                              {"kind": 1}, session=tx.session).to_list(None)
    return {row["kind"] for row in rows}


async def save_line_tags(tx: Transaction, contract: str, tagged: LineTags) -> None:
    """Keep the line's tags (replacing the previous ones); no tags: forget the line."""
    _id = f"{contract}:{tagged.operation_id}"
    if not tagged.tags:
        await tx.db.wallet_line_tags.delete_one({"_id": _id}, session=tx.session)
        return
    await tx.db.wallet_line_tags.replace_one(
        {"_id": _id}, dialect.current().upsert_replacement(_id, {
            "contract": contract, "operation_id": tagged.operation_id,
            "tags": list(tagged.tags)}), upsert=True, session=tx.session)


async def line_tags(tx: Transaction, contract: str) -> dict[str, tuple[str, ...]]:
    """Operation id -> tags, for every tagged line of the account."""
    rows = await tx.db.wallet_line_tags.find({"contract": contract},
                                             session=tx.session).to_list(None)
    return {row["operation_id"]: tuple(row["tags"]) for row in rows}


# --- top-up templates ------------------------------------------------------------------

async def load_templates(tx: Transaction, contract: str) -> TopUpTemplates | None:
    doc = await tx.db.wallet_top_up_templates.find_one({"_id": contract}, session=tx.session)
    return TopUpTemplates.from_doc(_strip(doc)) if doc else None


async def save_templates(tx: Transaction, templates: TopUpTemplates,
                         loaded: int | None) -> None:
    await save_versioned(tx.db.wallet_top_up_templates,
                         {"_id": templates.contract, **templates.to_doc()}, loaded,
                         session=tx.session, version=templates.version)


def _strip(doc: Doc) -> Doc:
    doc = dict(doc)
    doc.pop("_id", None)
    return doc


# --- autopay by date -------------------------------------------------------------------

def _due_ms(at: datetime | None) -> Any:
    return _ms(at) if at is not None else None


SCHEDULED_BATCH = 500


async def contracts_with_scheduled_due(db: Any, now: datetime,
                                       limit: int = SCHEDULED_BATCH) -> list[str]:
    """Contracts whose autopay by date has a due date that has begun (for the scheduler)."""
    cursor = db.wallet_accounts.find({"next_scheduled_due_ms": {"$lte": _ms(now)}}, {"_id": 1})
    return [doc["_id"] for doc in await cursor.to_list(limit)]


# --- applications ----------------------------------------------------------------------

MAX_APPLICATIONS_LISTED = 100


async def load_application(tx: Transaction, application_id: str) -> Application | None:
    doc = await tx.db.wallet_applications.find_one({"_id": application_id}, session=tx.session)
    return Application.from_doc(_strip(doc)) if doc else None


async def save_application(tx: Transaction, application: Application,
                           loaded: int | None) -> None:
    """Insert a new application (``loaded`` None) or replace it if nobody else wrote since
    it was loaded (ConcurrencyError otherwise: the consumer reruns the message)."""
    doc = {"_id": application.application_id, **application.to_doc(),
           "submitted_ms": _ms(application.submitted_at)}
    try:
        await save_versioned(tx.db.wallet_applications, doc, loaded, session=tx.session,
                             version=application.version)
    except DuplicateKeyError:
        raise ConcurrencyError(application.application_id) from None


async def applications(tx: Transaction, *, contract: str | None = None,
                       school_id: str | None = None) -> list[Application]:
    """A child's or a school's applications, newest first (at most 100)."""
    query: Doc = {"contract": contract} if contract is not None else {"school_id": school_id}
    docs = await tx.db.wallet_applications.find(query, session=tx.session).to_list(None)
    found = [Application.from_doc(_strip(doc)) for doc in docs]
    found.sort(key=lambda a: (a.submitted_at, a.application_id), reverse=True)
    return found[:MAX_APPLICATIONS_LISTED]
