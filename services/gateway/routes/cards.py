"""A child's cards: the plastic card and its virtual credentials (a phone or watch NFC id, a QR
token), listed with their states, each blocked and unblocked on its own (wallet's ``GetCards``,
``BlockCard``/``UnblockCard`` with the card uid; access and transit follow wallet's event).

Issuing and replacing a virtual credential is the card issuing system's (``VirtualCardIssued``
with ``replaces_card_uid``; a rotating QR token is a uid it replaces so): the cabinet asks for
a replacement through the issuer's own channel, so there is no call for it here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import Field

from contracts import wallet
from services.gateway.routes.common import (
    AUTHED,
    MUTATING,
    Auth,
    Body,
    CommandAcceptedModel,
    Contract,
    Key,
    ask,
    build_message,
    command,
    gateway,
)

CardUidPath = Annotated[str, Path(pattern=r"^[0-9A-F]{8,20}$", max_length=20,
                                  description="The card or credential uid (from the listing).")]


class CardBlockBody(Body):
    reason: str = Field(default="lost", max_length=64, pattern=r"^[a-z][a-z0-9_]*$",
                        examples=["lost"])


def routes() -> APIRouter:
    r = APIRouter(prefix="/v1/children", tags=["cards"])

    @r.get("/{contract}/cards", response_model=wallet.CardsReply, responses=AUTHED,
           summary="A child's plastic card and virtual credentials with their states")
    async def cards(request: Request, contract: Contract, me: Auth) -> wallet.CardsReply:
        return await ask(gateway(request), wallet.GetCards(contract=contract), contract,
                         wallet.CardsReply, token=me.token)

    @r.post("/{contract}/cards/{card_uid}/block", response_model=CommandAcceptedModel,
            responses=MUTATING, summary="Block one card alone (the other cards keep working)")
    async def block(request: Request, contract: Contract, card_uid: CardUidPath, me: Auth,
                    key: Key, body: CardBlockBody | None = None) -> Any:
        message = build_message(wallet.BlockCard, request_id=key, contract=contract,
                                card_uid=card_uid, reason=(body or CardBlockBody()).reason)
        return await command(request, message, contract, me)

    @r.post("/{contract}/cards/{card_uid}/unblock", response_model=CommandAcceptedModel,
            responses=MUTATING, summary="Unblock one card blocked alone")
    async def unblock(request: Request, contract: Contract, card_uid: CardUidPath, me: Auth,
                      key: Key) -> Any:
        message = build_message(wallet.UnblockCard, request_id=key, contract=contract,
                                card_uid=card_uid)
        return await command(request, message, contract, me)

    return r
