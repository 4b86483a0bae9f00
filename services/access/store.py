"""The only module of access that talks to MongoDB. Collections: access_cards (card
projection from card issuance and wallet events)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel

from services.runtime.mongo import Transaction

Doc = dict[str, Any]


async def ensure_indexes(db: Any) -> None:
    await db.access_cards.create_indexes([IndexModel([("contract", ASCENDING)], unique=True)])


async def save_card(tx: Transaction, card: Doc) -> None:
    await tx.db.access_cards.replace_one({"_id": card["_id"]}, card, upsert=True,
                                         session=tx.session)


async def card_by_contract(tx: Transaction, contract: str) -> Doc | None:
    return await tx.db.access_cards.find_one({"contract": contract}, session=tx.session)  # type: ignore[no-any-return]
