"""wallet: the topic -> handler table."""

from __future__ import annotations

from contracts.integrations import CardIssued, TopUpReceived
from services.runtime.consumer import Routes
from services.runtime.service import Runtime, main
from services.wallet import store
from services.wallet.handlers import Handlers
from services.wallet.settings import Settings


async def wire(rt: Runtime) -> Routes:
    await store.ensure_indexes(rt.db)
    h = Handlers(rt)
    return {
        CardIssued: h.on_card_issued,
        TopUpReceived: h.on_top_up,
    }


def run() -> None:
    main("wallet", Settings, wire)
