"""The only module of wallet that talks to MongoDB.

Collections: ``wallet_accounts`` (one document per contract: the Account aggregate with an
optimistic ``version``), ``wallet_ledger`` (immutable entries; unique entry ids make a double
posting impossible), ``wallet_schools`` (school-level settings such as the grace meal).
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel

from services.runtime.mongo import Transaction
from services.wallet.domain import Account, LedgerEntry

Doc = dict[str, Any]


class ConcurrencyError(Exception):
    """Another writer changed the account first; the message is retried (transient)."""


async def ensure_indexes(db: Any) -> None:
    await db.wallet_accounts.create_indexes([IndexModel([("card_uid", ASCENDING)])])
    await db.wallet_ledger.create_indexes([
        IndexModel([("account", ASCENDING), ("at", ASCENDING)]),
        IndexModel([("operation_id", ASCENDING)]),
    ])


async def load_account(tx: Transaction, contract: str) -> Account | None:
    doc = await tx.db.wallet_accounts.find_one({"_id": contract}, session=tx.session)
    return Account.from_doc(_strip(doc)) if doc else None


async def account_by_card(tx: Transaction, card_uid: str) -> Account | None:
    doc = await tx.db.wallet_accounts.find_one({"card_uid": card_uid, "status": "active"},
                                               session=tx.session)
    return Account.from_doc(_strip(doc)) if doc else None


async def save_account(tx: Transaction, account: Account, expected_version: int | None) -> None:
    """Insert a new account (``expected_version`` None) or replace it if nobody else wrote
    since it was loaded."""
    doc = {"_id": account.contract, **account.to_doc()}
    if expected_version is None:
        await tx.db.wallet_accounts.insert_one(doc, session=tx.session)
        return
    result = await tx.db.wallet_accounts.replace_one(
        {"_id": account.contract, "version": expected_version}, doc, session=tx.session)
    if result.matched_count != 1:
        raise ConcurrencyError(account.contract)


async def append_entries(tx: Transaction, entries: list[LedgerEntry]) -> None:
    if entries:
        await tx.db.wallet_ledger.insert_many(
            [{"_id": f"{e.account}:{e.entry_id}", **e.to_doc()} for e in entries],
            session=tx.session)


async def claim_payment(tx: Transaction, payment_id: str, contract: str, amount: int) -> str | None:
    """Reserve a payment id for one contract and amount across all accounts. Returns None when
    the id is new or was used with the same contract and amount, else the conflict detail."""
    known = await tx.db.wallet_payments.find_one({"_id": payment_id}, session=tx.session)
    if known is None:
        await tx.db.wallet_payments.insert_one(
            {"_id": payment_id, "contract": contract, "amount": amount, "at": tx.now},
            session=tx.session)
        return None
    if (known["contract"], known["amount"]) != (contract, amount):
        return "payment id already used with another contract or amount"
    return None


async def school_settings(tx: Transaction, school_id: str) -> Doc:
    return await tx.db.wallet_schools.find_one({"_id": school_id}, session=tx.session) or {}


def _strip(doc: Doc) -> Doc:
    doc = dict(doc)
    doc.pop("_id", None)
    return doc
