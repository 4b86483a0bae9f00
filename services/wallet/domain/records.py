"""What an Account remembers about each operation: enough to answer a replay with the same
result, to check refunds against charges, and to build the statement."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from services.wallet.domain.values import (
    Balances,
    DeclineReason,
    SubBalance,
    TopUpChannel,
)


@dataclass(frozen=True, slots=True)
class SaleItem:
    sku: str
    name: str
    category: str
    allergens: tuple[str, ...]
    qty: int
    unit_price: int

    @property
    def total(self) -> int:
        return self.qty * self.unit_price


@dataclass(slots=True)
class BonusLot:
    """Points accrued at one moment; they expire together, oldest lots are spent first."""

    lot_id: str
    accrued_at: datetime
    expires_at: datetime
    amount: int
    remaining: int


@dataclass(slots=True)
class DaySpend:
    """Money spent at the till on one school-local day (``day`` is ISO ``YYYY-MM-DD``)."""

    day: str
    total: int = 0
    canteen: int = 0
    general: int = 0


@dataclass(frozen=True, slots=True)
class DailyLimits:
    """Per school-local day caps on money paid at the till; None means no cap."""

    total: int | None = None
    canteen: int | None = None
    general: int | None = None


@dataclass(frozen=True, slots=True)
class AutoTopUpSettings:
    enabled: bool = False
    threshold: int = 0
    amount: int = 0
    sub_balance: SubBalance = SubBalance.CANTEEN


@dataclass(slots=True)
class TopUpRecord:
    payment_id: str
    amount: int
    sub_balance: SubBalance
    channel: TopUpChannel
    grace_debt_settled: int
    balances_after: Balances
    at: datetime
    seq: int = 0  # order of the operation on the account (its version)


@dataclass(slots=True)
class SaleRecord:
    sale_id: str
    terminal_id: str
    items: tuple[SaleItem, ...]
    bonus_requested: int
    at: datetime
    day: str
    approved: bool
    reason: DeclineReason | None
    detail: str
    total: int
    paid_canteen: int = 0
    paid_general: int = 0
    bonus_used: int = 0
    bonus_accrued: int = 0
    grace_credit: int = 0
    balances_after: Balances = field(default_factory=Balances)
    line_refunded: list[int] = field(default_factory=list)
    refunded_canteen: int = 0
    refunded_general: int = 0
    refunded_bonus: int = 0
    bonus_clawed_back: int = 0
    # Lines whose category the wallet excluded from bonuses: paid with money only, no accrual.
    bonus_excluded_lines: tuple[int, ...] = ()
    seq: int = 0  # order of the operation on the account (its version)

    @property
    def paid_money(self) -> int:
        return self.paid_canteen + self.paid_general

    @property
    def refunded(self) -> int:
        return sum(self.line_refunded)

    def refundable(self, line_no: int) -> int:
        return self.items[line_no].total - self.line_refunded[line_no]


@dataclass(slots=True)
class RideRecord:
    ride_id: str
    amount: int
    at: datetime
    approved: bool
    reason: DeclineReason | None
    paid_transit: int = 0
    paid_general: int = 0
    balances_after: Balances = field(default_factory=Balances)
    refunded_transit: int = 0
    refunded_general: int = 0
    seq: int = 0  # order of the operation on the account (its version)
    # A fare declined for lack of money is collected by a later top-up (never written off):
    collected_by: str | None = None  # the payment that paid it
    collected_at: datetime | None = None
    collected_seq: int = 0
    # Transit's corrections that lowered the fare while it was owed (no money moved):
    written_down: int = 0
    # A card reissue moved the ride to the new contract, which collects or refunds it now:
    moved_to: str | None = None
    inherited_from: str | None = None  # on the new contract: the contract it came from

    @property
    def refunded(self) -> int:
        return self.refunded_transit + self.refunded_general

    @property
    def paid(self) -> int:
        return self.paid_transit + self.paid_general

    @property
    def due(self) -> int:
        """What the fare costs now: the assessed amount less the corrections written down."""
        return self.amount - self.written_down

    @property
    def charged(self) -> bool:
        """Money was taken for the ride: at once, or later from a top-up."""
        return self.approved or self.collected_by is not None

    @property
    def owed(self) -> bool:
        """Declined for lack of money, not collected, not moved away and not corrected down
        to nothing: the card owes ``due``."""
        return (not self.approved and self.reason is DeclineReason.INSUFFICIENT_FUNDS
                and self.collected_by is None and self.moved_to is None and self.due > 0)


@dataclass(slots=True)
class FareRefundRecord:
    """A transit correction of a ride: money back (``to_transit`` + ``to_general``), or, for
    a fare still owed, the owed amount written down (no money; ``written_down``)."""

    correction_id: str
    ride_id: str
    amount: int
    to_transit: int
    to_general: int
    balances_after: Balances
    at: datetime
    seq: int = 0  # order of the operation on the account (its version)
    written_down: int = 0

    @property
    def money(self) -> int:
        return self.to_transit + self.to_general


@dataclass(slots=True)
class SaleRefundRecord:
    refund_id: str
    sale_id: str
    line_no: int
    amount: int
    money_canteen: int
    money_general: int
    bonus_restored: int
    bonus_clawed_back: int
    staff_id: str
    dispute_id: str | None
    balances_after: Balances
    at: datetime
    seq: int = 0  # order of the operation on the account (its version)

    @property
    def money(self) -> int:
        return self.money_canteen + self.money_general


@dataclass(slots=True)
class TransferRecord:
    transfer_id: str
    source: SubBalance
    target: SubBalance
    amount: int
    balances_after: Balances
    at: datetime
    seq: int = 0  # order of the operation on the account (its version)


class DisputeStatus(StrEnum):
    OPEN = "open"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(slots=True)
class Dispute:
    dispute_id: str
    sale_id: str | None
    line_no: int | None
    ride_id: str | None
    comment: str
    opened_at: datetime
    disputed_amount: int
    status: DisputeStatus = DisputeStatus.OPEN
    refund_amount: int = 0
    staff_id: str | None = None
    note: str = ""
    resolved_at: datetime | None = None


@dataclass(slots=True)
class ExpiryRecord:
    lot_id: str
    points: int
    at: datetime
    seq: int = 0  # order of the operation on the account (its version)


@dataclass(frozen=True, slots=True)
class ReissueRecord:
    """Kept on both accounts: the link between the old and the new contract."""

    reissue_id: str
    old_contract: str
    new_contract: str
    new_card_uid: str
    moved: Balances
    at: datetime


@dataclass(frozen=True, slots=True)
class PayoutRecord:
    """The remaining money paid out on leaving the school (a done refund application); the
    account closes with it, so there is at most one."""

    payout_id: str  # the application id
    amount: int
    at: datetime
    seq: int = 0


K = TypeVar("K")
R = TypeVar("R")


class NotLoaded(LookupError):
    """A record was asked for that the store did not load: the handler must name the keys a
    message needs (a programming error, never a business answer)."""


class Book(dict[K, R]):
    """One kind of an account's operation records, as far as they are in memory.

    History is kept outside the account (the store holds every record); an account carries the
    records that are open (a fare still owed, a dispute not resolved) and the ones its store
    loaded by key for the message at hand. ``complete`` books (a new account, a statement's
    whole history) answer every key; others answer the keys they hold or were told are absent
    and raise :class:`NotLoaded` for any other, so a forgotten key fails loudly instead of
    passing for a new operation.
    """

    __slots__ = ("absent", "complete")

    def __init__(self, items: Iterable[tuple[K, R]] = (), *, complete: bool = True,
                 absent: Iterable[K] = ()) -> None:
        super().__init__(items)
        self.complete = complete
        self.absent: set[K] = set(absent)

    def _known(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        if self.complete or key in self.absent:
            return False
        raise NotLoaded(key)

    def get(self, key: K, default: R | None = None) -> R | None:  # type: ignore[override]
        return dict.__getitem__(self, key) if self._known(key) else default

    def __contains__(self, key: object) -> bool:
        return self._known(key)

    def __getitem__(self, key: K) -> R:
        if not self._known(key):
            raise KeyError(key)
        return dict.__getitem__(self, key)
