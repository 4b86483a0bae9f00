"""Domain events recorded by the Account (past tense). Handlers map each to a wire event.

Events are recorded only when state changes: a replayed operation records nothing and returns
its stored result instead, so the handler can re-send the reply without double-publishing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.wallet.domain._codec import to_plain
from services.wallet.domain.records import SaleItem
from services.wallet.domain.values import (
    Balances,
    DeclineReason,
    SubBalance,
    TopUpChannel,
)


@dataclass(frozen=True, slots=True)
class AccountOpened:
    contract: str
    card_uid: str
    school_id: str
    time_zone: str
    predecessor_contract: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class TopUpCredited:
    """A top-up was credited; also the source of the e-mail receipt."""

    contract: str
    payment_id: str
    amount: int
    sub_balance: SubBalance
    channel: TopUpChannel
    grace_debt_settled: int  # part of the amount that paid back a grace meal first
    balances: Balances
    at: datetime


@dataclass(frozen=True, slots=True)
class GraceDebtSettled:
    """A top-up paid back everything the card owed: the grace meal and the fares declined for
    lack of money (``fares`` are the ride ids collected by this payment, ``fares_total`` their
    sum); transit lifts the deny-list entry."""

    contract: str
    payment_id: str | None
    at: datetime
    fares: tuple[str, ...] = ()
    fares_total: int = 0
    # set instead of the payment when a fare correction cancelled the last owed fare
    correction_id: str | None = None


@dataclass(frozen=True, slots=True)
class SaleApproved:
    contract: str
    sale_id: str
    terminal_id: str
    items: tuple[SaleItem, ...]
    total: int
    paid_canteen: int
    paid_general: int
    bonus_used: int
    bonus_accrued: int
    grace_credit: int  # > 0 when the meal was given on credit
    balances: Balances
    at: datetime

    @property
    def paid_money(self) -> int:
        return self.paid_canteen + self.paid_general


@dataclass(frozen=True, slots=True)
class SaleDeclined:
    contract: str
    sale_id: str
    terminal_id: str
    reason: DeclineReason
    detail: str
    total: int
    at: datetime


@dataclass(frozen=True, slots=True)
class GraceMealGranted:
    """A meal was given on credit: the parent is told at once."""

    contract: str
    sale_id: str
    debt: int
    at: datetime


@dataclass(frozen=True, slots=True)
class FareDebited:
    contract: str
    ride_id: str
    amount: int
    paid_transit: int
    paid_general: int
    balances: Balances
    at: datetime


@dataclass(frozen=True, slots=True)
class FareDeclined:
    """The card cannot pay: transit deny-lists it."""

    contract: str
    ride_id: str
    amount: int
    reason: DeclineReason
    at: datetime


@dataclass(frozen=True, slots=True)
class FareRefunded:
    contract: str
    correction_id: str
    ride_id: str
    amount: int
    balances: Balances
    at: datetime


@dataclass(frozen=True, slots=True)
class SaleLineRefunded:
    contract: str
    refund_id: str
    sale_id: str
    line_no: int
    amount: int
    money: int
    bonus_restored: int
    bonus_clawed_back: int
    staff_id: str
    dispute_id: str | None
    balances: Balances
    at: datetime


@dataclass(frozen=True, slots=True)
class DisputeOpened:
    contract: str
    dispute_id: str
    sale_id: str | None
    line_no: int | None
    ride_id: str | None
    disputed_amount: int  # what could still be refunded on that line when it was opened
    at: datetime


@dataclass(frozen=True, slots=True)
class DisputeApproved:
    contract: str
    dispute_id: str
    refund_amount: int
    staff_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DisputeRejected:
    contract: str
    dispute_id: str
    staff_id: str
    note: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LowBalanceReached:
    """Once per downward crossing of the parent's threshold on canteen + general (``balance``).

    ``sub_balance`` is the pocket whose draw took the sum below the threshold: a meal draws
    canteen, then general, then (a grace meal) canteen again; a fare lowers the sum only
    through general; a move through its source.
    """

    contract: str
    balance: int
    threshold: int
    days_of_lunches_left: int | None
    at: datetime
    sub_balance: SubBalance = SubBalance.CANTEEN


@dataclass(frozen=True, slots=True)
class AutoTopUpRequested:
    contract: str
    request_id: str
    amount: int
    sub_balance: SubBalance
    at: datetime
    reason: str = "threshold"  # or "schedule": a due date of the autopay by date
    due_date: str | None = None  # ISO school-local day, for a scheduled request


@dataclass(frozen=True, slots=True)
class AutoTopUpFailed:
    """The integrator could not collect a pending planned payment; the next crossing of the
    threshold asks again."""

    contract: str
    request_id: str
    amount: int
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AutoTopUpCancelled:
    contract: str
    request_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CardBlocked:
    contract: str
    reason: str
    by: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class CardUnblocked:
    contract: str
    by: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class TransitPaymentsSwitched:
    """The parent switched the card's transit payments on or off (transit may deny-list a card
    that pays no fares)."""

    contract: str
    enabled: bool
    by: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class ControlsChanged:
    """Any parent control or school setting changed; ``what`` names it, ``value`` is plain."""

    contract: str
    what: str
    value: Any
    by: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class MoneyMoved:
    contract: str
    transfer_id: str
    source: SubBalance
    target: SubBalance
    amount: int
    balances: Balances
    at: datetime


@dataclass(frozen=True, slots=True)
class BonusesExpired:
    contract: str
    points: int
    lot_ids: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class CardReissued:
    old_contract: str
    new_contract: str
    reissue_id: str
    moved: Balances
    at: datetime


DomainEvent = (
    AccountOpened
    | TopUpCredited
    | GraceDebtSettled
    | SaleApproved
    | SaleDeclined
    | GraceMealGranted
    | FareDebited
    | FareDeclined
    | FareRefunded
    | SaleLineRefunded
    | DisputeOpened
    | DisputeApproved
    | DisputeRejected
    | LowBalanceReached
    | AutoTopUpRequested
    | AutoTopUpCancelled
    | AutoTopUpFailed
    | CardBlocked
    | CardUnblocked
    | ControlsChanged
    | TransitPaymentsSwitched
    | MoneyMoved
    | BonusesExpired
    | CardReissued
)


def event_to_doc(event: DomainEvent) -> dict[str, Any]:
    """Plain dict with a ``type`` field: handy for an outbox document or a log line."""
    doc: dict[str, Any] = to_plain(event)
    doc["type"] = type(event).__name__
    return doc
