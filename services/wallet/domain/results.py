"""What each Account operation returns. A replay returns an equal result with ``replayed``
set (``replayed`` takes no part in equality)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.wallet.domain.events import (
    FareDebited,
    FareDeclined,
    FareRefunded,
    SaleApproved,
    SaleDeclined,
)
from services.wallet.domain.records import DisputeStatus
from services.wallet.domain.values import Balances, DeclineReason, SubBalance


@dataclass(frozen=True, slots=True)
class TopUpResult:
    payment_id: str
    amount: int
    sub_balance: SubBalance
    grace_debt_settled: int
    balances: Balances
    replayed: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class SaleResult:
    sale_id: str
    approved: bool
    reason: DeclineReason | None
    detail: str
    total: int
    paid_canteen: int
    paid_general: int
    bonus_used: int
    bonus_accrued: int
    grace_credit: int
    balances: Balances
    replayed: bool = field(default=False, compare=False)

    @property
    def paid_money(self) -> int:
        return self.paid_canteen + self.paid_general


@dataclass(frozen=True, slots=True)
class SaleDecision:
    """A till's sale decided: ``result`` answers the till, as of ``decided_at``. ``resend``
    holds the sale event to send again when the call recorded nothing new: a replayed sale
    answers with the recorded decision, and a closed account (which records nothing) with a
    decline made now. Empty when the decision is new (its event is pending on the account)."""

    result: SaleResult
    decided_at: datetime
    resend: tuple[SaleApproved | SaleDeclined, ...] = ()


@dataclass(frozen=True, slots=True)
class FareResult:
    ride_id: str
    approved: bool
    reason: DeclineReason | None
    amount: int
    paid_transit: int
    paid_general: int
    balances: Balances
    replayed: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class FareRefundResult:
    """``paid_back`` is the money returned; the rest of ``amount`` wrote an owed fare down."""

    correction_id: str
    ride_id: str
    amount: int
    balances: Balances
    replayed: bool = field(default=False, compare=False)
    paid_back: int = 0


@dataclass(frozen=True, slots=True)
class FareDecision:
    """A fare decided; ``resend`` holds the fare event to send again when the call recorded
    nothing new (a replayed ride, or a closed account's decline made now)."""

    result: FareResult
    resend: tuple[FareDebited | FareDeclined, ...] = ()


@dataclass(frozen=True, slots=True)
class FareCorrection:
    """A fare correction applied; ``resend`` holds the recorded refund to send again when a
    replayed correction had paid money back."""

    result: FareRefundResult
    resend: tuple[FareRefunded, ...] = ()


@dataclass(frozen=True, slots=True)
class RefundResult:
    refund_id: str
    sale_id: str
    line_no: int
    amount: int
    money: int
    bonus_restored: int
    bonus_clawed_back: int
    balances: Balances
    replayed: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class TransferResult:
    transfer_id: str
    source: SubBalance
    target: SubBalance
    amount: int
    balances: Balances
    replayed: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class DisputeResult:
    dispute_id: str
    status: DisputeStatus
    disputed_amount: int
    refund_amount: int
    replayed: bool = field(default=False, compare=False)
