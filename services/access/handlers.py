"""Access use cases: load -> domain -> commit through the unit of work."""

from __future__ import annotations

from contracts.access import AllowListEntry
from contracts.catalog import topic_for
from contracts.integrations import CardIssued
from services.access import store
from services.runtime.consumer import Inbound
from services.runtime.service import Runtime


class Handlers:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def on_card_issued(self, msg: Inbound) -> None:
        card: CardIssued = msg.message
        async with self.rt.uow.transaction(inbox_id=msg.inbox_id, cause=msg.envelope,
                                           now=self.rt.clock()) as tx:
            await store.save_card(tx, {"_id": card.card_uid, "contract": card.contract,
                                       "school_id": card.school_id, "class_name": card.class_name,
                                       "school_tz": card.school_tz, "status": "active"})
            entry = AllowListEntry(card_uid=card.card_uid, school_id=card.school_id,
                                   allowed=True, updated_at=tx.now)
            tx.emit(topic_for(AllowListEntry).name, card.card_uid, entry)
