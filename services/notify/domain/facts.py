"""What happened, as notify needs to know it: one frozen fact type per notification kind.

Handlers translate wire events into a :class:`NotificationEvent`; the domain never sees Pydantic.
Amounts are integer kopecks; instants are timezone-aware (UTC inside the domain).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from .clock import require_aware
from .errors import NotifyError, NotifyRejection
from .kinds import ACCOUNT_KINDS, NotificationKind


class DeclineReason(StrEnum):
    INSUFFICIENT_FUNDS = "insufficient_funds"
    DAILY_LIMIT = "daily_limit"
    BLOCKED_CATEGORY = "blocked_category"
    BLOCKED_ITEM = "blocked_item"
    ALLERGEN = "allergen"
    CARD_BLOCKED = "card_blocked"
    OTHER = "other"


class FareExplanation(StrEnum):
    FULL_FARE = "full_fare"
    CONCESSION = "concession"
    TRANSFER_FREE = "transfer_free"
    CAPPED = "capped"
    CORRECTED = "corrected"


class CodePurpose(StrEnum):
    REGISTRATION = "registration"
    LOGIN = "login"
    PASSWORD_RESET = "password_reset"
    SECOND_FACTOR = "second_factor"


@dataclass(frozen=True, slots=True)
class GateFacts:
    """Turnstile entry or exit (child_entered, child_left)."""

    at: datetime
    school: str | None = None


@dataclass(frozen=True, slots=True)
class ManualEntryFacts:
    """A guard let the child through by hand (forgotten or blocked card)."""

    at: datetime
    school: str | None = None
    entering: bool = True
    note: str | None = None


@dataclass(frozen=True, slots=True)
class LateFacts:
    at: datetime
    lesson_start: datetime
    school: str | None = None


@dataclass(frozen=True, slots=True)
class AbsentFacts:
    day: date
    school: str | None = None


@dataclass(frozen=True, slots=True)
class PurchaseLine:
    name: str
    quantity: int
    unit_price: int  # kopecks

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True, slots=True)
class CanteenPurchaseFacts:
    at: datetime
    lines: tuple[PurchaseLine, ...]
    total: int  # kopecks, as charged (may differ from the lines' sum after a bonus discount)
    balance_after: int  # kopecks, signed: a grace meal may leave a bounded debt
    place: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentDeclinedFacts:
    at: datetime
    amount: int
    reason: DeclineReason
    place: str | None = None
    item: str | None = None  # the blocked item or category, when the reason names one


@dataclass(frozen=True, slots=True)
class RideFacts:
    at: datetime
    fare: int
    explanation: FareExplanation
    route: str | None = None
    stop: str | None = None
    balance_after: int | None = None
    refund: int | None = None  # set when a correction gave money back


@dataclass(frozen=True, slots=True)
class TopUpFacts:
    """A top-up; also the content of its e-mail receipt."""

    at: datetime
    amount: int
    balance_after: int | None  # None when the source (a bare receipt request) does not say
    payment_id: str
    source: str | None = None
    sub_balance: str | None = None


@dataclass(frozen=True, slots=True)
class LowBalanceFacts:
    balance: int
    days_left: int | None = None  # predicted from the child's own spending rate, when known
    threshold: int | None = None


@dataclass(frozen=True, slots=True)
class CardBlockedFacts:
    at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class NewLoginFacts:
    at: datetime
    device: str | None = None
    place: str | None = None


@dataclass(frozen=True, slots=True)
class PasswordChangedFacts:
    at: datetime


@dataclass(frozen=True, slots=True)
class SecondFactorDisabledFacts:
    """The authenticator-app code is no longer asked at login; ``by_support`` when support
    reset it (and ended every session) rather than the owner switching it off."""

    at: datetime
    by_support: bool = False


@dataclass(frozen=True, slots=True)
class OneTimeCodeFacts:
    """The code is a secret: it is excluded from ``repr`` so it cannot leak into logs."""

    code: str = field(repr=False)
    purpose: CodePurpose
    ttl_minutes: int


@dataclass(frozen=True, slots=True)
class ArrivedSafelyFacts:
    at: datetime
    school: str | None = None
    ride_at: datetime | None = None
    ride_route: str | None = None


@dataclass(frozen=True, slots=True)
class NotArrivedFacts:
    last_ride_at: datetime
    lesson_start: datetime
    route: str | None = None
    school: str | None = None


@dataclass(frozen=True, slots=True)
class DigestItem:
    at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class DigestFacts:
    day: date
    items: tuple[DigestItem, ...]


Facts = (
    GateFacts
    | ManualEntryFacts
    | LateFacts
    | AbsentFacts
    | CanteenPurchaseFacts
    | PaymentDeclinedFacts
    | RideFacts
    | TopUpFacts
    | LowBalanceFacts
    | CardBlockedFacts
    | NewLoginFacts
    | PasswordChangedFacts
    | SecondFactorDisabledFacts
    | OneTimeCodeFacts
    | ArrivedSafelyFacts
    | NotArrivedFacts
    | DigestFacts
)

FACTS_TYPE: dict[NotificationKind, type[Facts]] = {
    NotificationKind.CHILD_ENTERED: GateFacts,
    NotificationKind.CHILD_LEFT: GateFacts,
    NotificationKind.LATE: LateFacts,
    NotificationKind.ABSENT: AbsentFacts,
    NotificationKind.MANUAL_ENTRY: ManualEntryFacts,
    NotificationKind.CANTEEN_PURCHASE: CanteenPurchaseFacts,
    NotificationKind.PAYMENT_DECLINED: PaymentDeclinedFacts,
    NotificationKind.RIDE: RideFacts,
    NotificationKind.TOP_UP: TopUpFacts,
    NotificationKind.RECEIPT: TopUpFacts,
    NotificationKind.LOW_BALANCE: LowBalanceFacts,
    NotificationKind.CARD_BLOCKED: CardBlockedFacts,
    NotificationKind.NEW_LOGIN: NewLoginFacts,
    NotificationKind.PASSWORD_CHANGED: PasswordChangedFacts,
    NotificationKind.SECOND_FACTOR_DISABLED: SecondFactorDisabledFacts,
    NotificationKind.ONE_TIME_CODE: OneTimeCodeFacts,
    NotificationKind.ARRIVED_SAFELY: ArrivedSafelyFacts,
    NotificationKind.NOT_ARRIVED_ALERT: NotArrivedFacts,
    NotificationKind.DAILY_DIGEST: DigestFacts,
}


def check_facts(kind: NotificationKind, facts: Facts) -> None:
    expected = FACTS_TYPE[kind]
    if not isinstance(facts, expected):
        raise NotifyError(
            NotifyRejection.FACTS_KIND_MISMATCH,
            f"{kind.value} needs {expected.__name__}, got {type(facts).__name__}",
        )


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    """One domain event that may become messages.

    ``event_id`` is the id of the event that caused it (the wire envelope id, or a deterministic
    id for events notify derives itself): it is the root of every dedupe key, so a redelivered
    event maps onto the same messages. ``contract`` addresses the child's guardians;
    ``account_id`` addresses one guardian account (new login, password changed, second factor
    disabled).
    """

    event_id: str
    kind: NotificationKind
    occurred_at: datetime
    facts: Facts
    contract: str | None = None
    account_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "occurred_at", require_aware(self.occurred_at, "occurred_at"))
        check_facts(self.kind, self.facts)
        if self.kind is NotificationKind.ONE_TIME_CODE:
            raise NotifyError(
                NotifyRejection.FACTS_KIND_MISMATCH,
                "one-time codes are a OneTimeCodeRequest, never routed to guardians",
            )
        if self.kind in ACCOUNT_KINDS and self.account_id is None:
            raise NotifyError(NotifyRejection.FACTS_KIND_MISMATCH, "account kind without account")
        if self.kind not in ACCOUNT_KINDS and self.contract is None:
            raise NotifyError(NotifyRejection.FACTS_KIND_MISMATCH, "child kind without contract")


@dataclass(frozen=True, slots=True)
class OneTimeCodeRequest:
    """A request from auth to text a code to a phone; no guardian lookup is involved.

    ``request_id`` is the idempotency key (a resend is a new request with a new id).
    """

    request_id: str
    phone: str = field(repr=False)
    code: str = field(repr=False)
    purpose: CodePurpose
    requested_at: datetime
    ttl_minutes: int = 5
    locale: str = "ru"
