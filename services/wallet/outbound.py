"""Domain events -> wire events: one small function per event, the only translation point.

Message ids are derived from the operation (uuid5), so re-emitting the recorded result of a
redelivered payment, sale or ride yields the very same message id and downstream inboxes
drop it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from contracts import wallet as wire
from contracts.catalog import topic_for
from contracts.envelope import ContractModel
from services.wallet import domain as d

NAMESPACE = uuid.UUID("5b0c8f2e-3c1a-4f4e-9a61-7d2b1c0e9a11")


def message_id(kind: str, *parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join([kind, *map(str, parts)])))


def balances(b: d.Balances) -> wire.Balances:
    return wire.Balances(general=b.general, canteen=b.canteen, transit=b.transit,
                         bonus_points=b.bonus)


def _account_opened(e: d.AccountOpened) -> ContractModel:
    return wire.AccountOpened(contract=e.contract, school_id=e.school_id, opened_at=e.at)


def _top_up(e: d.TopUpCredited) -> ContractModel:
    return wire.TopUpApplied(contract=e.contract, payment_id=e.payment_id, amount=e.amount,
                             sub_balance=e.sub_balance.value, channel=e.channel.value,
                             balances=balances(e.balances), applied_at=e.at)


def _debt_settled(e: d.GraceDebtSettled) -> ContractModel:
    return wire.DebtSettled(contract=e.contract, settled_at=e.at)


OUTBOUND: dict[type[Any], tuple[Callable[[Any], ContractModel], Callable[[Any], str]]] = {
    d.AccountOpened: (_account_opened, lambda e: message_id("opened", e.contract)),
    d.TopUpCredited: (_top_up, lambda e: message_id("topup", e.contract, e.payment_id)),
    d.GraceDebtSettled: (_debt_settled, lambda e: message_id("settled", e.contract, e.payment_id)),
}


def to_wire(event: Any) -> tuple[str, str, ContractModel, str] | None:
    """(topic, key, message, message id) for a domain event; None for internal-only events."""
    mapping = OUTBOUND.get(type(event))
    if mapping is None:
        return None
    convert, mid = mapping
    message = convert(event)
    return topic_for(type(message)).name, event.contract, message, mid(event)
