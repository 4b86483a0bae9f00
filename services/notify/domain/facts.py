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
from .kinds import ACCOUNT_KINDS, GuardianRole, NotificationKind


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
    PHONE_CONFIRMATION = "phone_confirmation"
    EMAIL_CONFIRMATION = "email_confirmation"


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
class GraceMealFacts:
    """A meal given on credit under the school's grace rule; the next top-up pays it."""

    at: datetime
    debt: int  # kopecks owed now


@dataclass(frozen=True, slots=True)
class DisputeOpenedFacts:
    at: datetime
    operation_id: str  # the sale or ride disputed
    line: int | None = None  # 0-based sale line, when one line is disputed


@dataclass(frozen=True, slots=True)
class DisputeResolvedFacts:
    at: datetime
    approved: bool
    refunded: int  # kopecks; 0 when rejected


class RefundOf(StrEnum):
    SALE_LINE = "sale_line"
    RIDE = "ride"


@dataclass(frozen=True, slots=True)
class RefundFacts:
    """Money given back: a canteen sale line (e.g. an approved dispute) or a ride's fare (a
    late tap lowered it)."""

    at: datetime
    amount: int  # kopecks credited back
    of: RefundOf
    balance_after: int | None = None  # the balances the refund went to, when known
    dispute: bool = False


@dataclass(frozen=True, slots=True)
class DebtSettledFacts:
    """A top-up paid what the card owed (a grace meal, declined fares)."""

    at: datetime
    fares: int = 0  # how many declined fares were paid
    fares_total: int = 0  # kopecks


class TopUpRejection(StrEnum):
    UNKNOWN_CONTRACT = "unknown_contract"
    ACCOUNT_CLOSED = "account_closed"
    PAYMENT_ID_CONFLICT = "payment_id_conflict"
    OTHER = "other"


def rejection_reaches_guardians(reason: TopUpRejection) -> bool:
    """A payment for a contract wallet does not know has nobody to tell: the payer probably
    mistyped the number, and the guardians of whatever contract it names must not learn of a
    stranger's payment. The payer hears from the bank, which keeps the money."""
    return reason is not TopUpRejection.UNKNOWN_CONTRACT


@dataclass(frozen=True, slots=True)
class TopUpRejectedFacts:
    """A top-up that could not be credited: the money stays with the bank, which returns it."""

    at: datetime
    amount: int
    reason: TopUpRejection
    payment_id: str


@dataclass(frozen=True, slots=True)
class AutoTopUpFailedFacts:
    """A planned payment the payments integrator could not collect."""

    at: datetime
    amount: int
    reason: str  # the integrator's reason code, e.g. card_declined


@dataclass(frozen=True, slots=True)
class ConcessionExpiringFacts:
    valid_until: date
    days_left: int


@dataclass(frozen=True, slots=True)
class RegistrationAttemptFacts:
    """Someone started a registration with this account's phone."""

    at: datetime


@dataclass(frozen=True, slots=True)
class SessionRevokedFacts:
    """A session ended because its refresh token was used again after rotation (a copy)."""

    at: datetime


@dataclass(frozen=True, slots=True)
class ChildLinkRefusedFacts:
    """Someone failed to prove they know the child (wrong birth date or activation code)."""

    at: datetime
    failures: int = 1  # in the last hour


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
class AccountLockedFacts:
    """Failed logins closed the login: until ``until`` (then by itself), or until support
    opens it (``until`` None)."""

    at: datetime
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AccountUnlockedFacts:
    """Support opened the login again."""

    at: datetime


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


@dataclass(frozen=True, slots=True)
class SupportAnsweredFacts:
    """Support answered a parent's request: the message names the request, never the answer
    (it is read in the app, where the parent is signed in)."""

    ticket_id: str
    topic: str
    at: datetime
    closed: bool = False


@dataclass(frozen=True, slots=True)
class GuardianInvitedFacts:
    """The child's primary guardian invited this account to follow the child with ``role``;
    the invitee accepts in the cabinet before ``expires_at``."""

    at: datetime
    role: GuardianRole
    expires_at: datetime


class ApplicationOf(StrEnum):
    NEW_CARD = "new_card"
    REFUND = "refund"  # the remaining balance paid out on leaving the school


class ApplicationOutcome(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class ApplicationFacts:
    """The school handled a guardian's application (a new card, the refund of the balance);
    ``comment`` is the staff's, ``refunded`` the kopecks paid out by a done refund."""

    at: datetime
    of: ApplicationOf
    outcome: ApplicationOutcome
    comment: str | None = None
    refunded: int | None = None


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
    | GraceMealFacts
    | DisputeOpenedFacts
    | DisputeResolvedFacts
    | RefundFacts
    | DebtSettledFacts
    | TopUpRejectedFacts
    | AutoTopUpFailedFacts
    | ConcessionExpiringFacts
    | RegistrationAttemptFacts
    | SessionRevokedFacts
    | ChildLinkRefusedFacts
    | NewLoginFacts
    | PasswordChangedFacts
    | SecondFactorDisabledFacts
    | AccountLockedFacts
    | AccountUnlockedFacts
    | OneTimeCodeFacts
    | ArrivedSafelyFacts
    | NotArrivedFacts
    | DigestFacts
    | SupportAnsweredFacts
    | GuardianInvitedFacts
    | ApplicationFacts
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
    NotificationKind.GRACE_MEAL: GraceMealFacts,
    NotificationKind.DISPUTE_OPENED: DisputeOpenedFacts,
    NotificationKind.DISPUTE_RESOLVED: DisputeResolvedFacts,
    NotificationKind.REFUND: RefundFacts,
    NotificationKind.DEBT_SETTLED: DebtSettledFacts,
    NotificationKind.TOP_UP_REJECTED: TopUpRejectedFacts,
    NotificationKind.AUTO_TOP_UP_FAILED: AutoTopUpFailedFacts,
    NotificationKind.CONCESSION_EXPIRING: ConcessionExpiringFacts,
    NotificationKind.REGISTRATION_ATTEMPT: RegistrationAttemptFacts,
    NotificationKind.SESSION_REVOKED: SessionRevokedFacts,
    NotificationKind.CHILD_LINK_REFUSED: ChildLinkRefusedFacts,
    NotificationKind.NEW_LOGIN: NewLoginFacts,
    NotificationKind.PASSWORD_CHANGED: PasswordChangedFacts,
    NotificationKind.SECOND_FACTOR_DISABLED: SecondFactorDisabledFacts,
    NotificationKind.ACCOUNT_LOCKED: AccountLockedFacts,
    NotificationKind.ACCOUNT_UNLOCKED: AccountUnlockedFacts,
    NotificationKind.ONE_TIME_CODE: OneTimeCodeFacts,
    NotificationKind.ARRIVED_SAFELY: ArrivedSafelyFacts,
    NotificationKind.NOT_ARRIVED_ALERT: NotArrivedFacts,
    NotificationKind.DAILY_DIGEST: DigestFacts,
    NotificationKind.SUPPORT_ANSWERED: SupportAnsweredFacts,
    NotificationKind.GUARDIAN_INVITED: GuardianInvitedFacts,
    NotificationKind.APPLICATION_STATUS: ApplicationFacts,
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
    disabled, the other security alerts); a refused child link has both: the primary guardian
    it is addressed to and the child it names.
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
    """A request from auth to text a code to a phone, or with ``email`` (``phone`` None) to
    mail it to an address being confirmed; no guardian lookup is involved.

    ``request_id`` is the idempotency key (a resend is a new request with a new id).
    """

    request_id: str
    phone: str | None = field(repr=False)
    code: str = field(repr=False)
    purpose: CodePurpose
    requested_at: datetime
    ttl_minutes: int = 5
    locale: str = "ru"
    email: str | None = field(default=None, repr=False)
