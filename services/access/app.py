"""access: the topic -> handler table."""

from __future__ import annotations

from contracts.integrations import CardIssued
from services.access import store
from services.access.handlers import Handlers
from services.access.settings import Settings
from services.runtime.consumer import Routes
from services.runtime.service import Runtime, main


async def wire(rt: Runtime) -> Routes:
    await store.ensure_indexes(rt.db)
    h = Handlers(rt)
    return {
        CardIssued: h.on_card_issued,
    }


def run() -> None:
    main("access", Settings, wire)
