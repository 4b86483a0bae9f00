"""Value types of the wallet domain: sub-balances, reason codes, balances, time helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contracts.money import MAX_AMOUNT

CONTRACT_PATTERN = re.compile(r"^\d{8}$")
BONUS_BASIS_POINTS = 100  # 1 % of the money part of a canteen sale
BONUS_LIFETIME_MONTHS = 12
PREDICTION_WINDOW_DAYS = 14  # school days with purchases used for "days of lunches left"


class SubBalance(StrEnum):
    """A pocket of the account. ``bonus`` holds points (1 point = 1 kopeck), not money."""

    GENERAL = "general"
    CANTEEN = "canteen"
    TRANSIT = "transit"
    BONUS = "bonus"


MONEY_SUB_BALANCES: tuple[SubBalance, ...] = (
    SubBalance.GENERAL,
    SubBalance.CANTEEN,
    SubBalance.TRANSIT,
)


class AccountStatus(StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    CLOSED = "closed"


class TopUpChannel(StrEnum):
    BANK_CARD = "bank_card"
    TERMINAL = "terminal"
    ATM = "atm"
    CASHIER = "cashier"
    AUTO_TOP_UP = "auto_top_up"


class DeclineReason(StrEnum):
    """Why a sale or a fare was declined: a normal outcome, answered to the till/validator."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    DAILY_LIMIT = "daily_limit"
    BLOCKED_CATEGORY = "blocked_category"
    BLOCKED_ITEM = "blocked_item"
    ALLERGEN = "allergen"
    CARD_BLOCKED = "card_blocked"
    # Never produced by Account: the handler uses it when no account exists for the card.
    UNKNOWN_CARD = "unknown_card"
    ACCOUNT_CLOSED = "account_closed"
    # The parent switched transit payments off: the card passes gates and pays in the canteen
    # but does not pay fares.
    TRANSIT_PAYMENTS_OFF = "transit_payments_off"


class RejectionReason(StrEnum):
    """Why an operation was refused outright (raised as :class:`WalletRejected`)."""

    INVALID_AMOUNT = "invalid_amount"
    INVALID_SALE = "invalid_sale"
    INVALID_SETTING = "invalid_setting"
    INVALID_SUB_BALANCE = "invalid_sub_balance"
    ACCOUNT_CLOSED = "account_closed"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    UNKNOWN_SALE = "unknown_sale"
    UNKNOWN_SALE_LINE = "unknown_sale_line"
    UNKNOWN_RIDE = "unknown_ride"
    NOT_CHARGED = "not_charged"
    REFUND_EXCEEDS_CHARGE = "refund_exceeds_charge"
    NOTHING_TO_REFUND = "nothing_to_refund"
    INVALID_DISPUTE = "invalid_dispute"
    UNKNOWN_DISPUTE = "unknown_dispute"
    DISPUTE_ALREADY_OPEN = "dispute_already_open"
    DISPUTE_NOT_OPEN = "dispute_not_open"
    SAME_CONTRACT = "same_contract"
    INVALID_TAGS = "invalid_tags"
    UNKNOWN_OPERATION = "unknown_operation"
    INVALID_TEMPLATE = "invalid_template"
    TOO_MANY_TEMPLATES = "too_many_templates"
    TEMPLATE_NAME_CONFLICT = "template_name_conflict"
    UNKNOWN_TEMPLATE = "unknown_template"
    UNKNOWN_SCHEDULE = "unknown_schedule"
    INVALID_APPLICATION = "invalid_application"
    APPLICATION_OPEN = "application_open"
    APPLICATION_CLOSED = "application_closed"
    UNKNOWN_APPLICATION = "unknown_application"
    COMMENT_REQUIRED = "comment_required"
    DEBT_OUTSTANDING = "debt_outstanding"
    CREDENTIAL_CONFLICT = "credential_conflict"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    CREDENTIAL_RETIRED = "credential_retired"
    BALANCE_LIMIT = "balance_limit"


class WalletRejected(Exception):
    """An operation the domain refuses; nothing was changed. ``reason`` is machine-readable."""

    def __init__(self, reason: RejectionReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Balances:
    """A snapshot of every pocket, kopecks (``bonus`` in points)."""

    general: int = 0
    canteen: int = 0
    transit: int = 0
    bonus: int = 0

    def of(self, sub_balance: SubBalance) -> int:
        value: int = getattr(self, sub_balance.value)
        return value

    @property
    def money(self) -> int:
        return self.general + self.canteen + self.transit

    @property
    def meal_funds(self) -> int:
        """What a canteen sale can draw on (canteen, then general): the low-balance measure."""
        return self.canteen + self.general


def require_aware(now: datetime) -> datetime:
    """Normalise an instant to UTC; a naive datetime is a programming error, not a rejection."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("the clock must be timezone-aware")
    return now.astimezone(UTC)


def require_amount(amount: object, *, allow_zero: bool = False) -> int:
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise WalletRejected(RejectionReason.INVALID_AMOUNT, f"not an integer: {amount!r}")
    low = 0 if allow_zero else 1
    if amount < low or amount > MAX_AMOUNT:
        raise WalletRejected(RejectionReason.INVALID_AMOUNT, f"out of range: {amount}")
    return amount


def require_money_sub_balance(value: SubBalance | str) -> SubBalance:
    try:
        sub = SubBalance(value)
    except ValueError:
        raise WalletRejected(RejectionReason.INVALID_SUB_BALANCE, str(value)) from None
    if sub not in MONEY_SUB_BALANCES:
        raise WalletRejected(RejectionReason.INVALID_SUB_BALANCE, f"{sub.value} is not money")
    return sub


def zone(time_zone: str) -> ZoneInfo:
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise WalletRejected(RejectionReason.INVALID_SETTING, f"time zone {time_zone!r}") from None


def local_day(now: datetime, time_zone: str) -> date:
    """The school's calendar day at ``now``: daily limits restart at local midnight."""
    return require_aware(now).astimezone(zone(time_zone)).date()


def add_months(moment: datetime, months: int) -> datetime:
    """Same wall-clock instant ``months`` later; the 31st becomes the month's last day."""
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    for day in (moment.day, 30, 29, 28):
        if day <= moment.day:
            try:
                return moment.replace(year=year, month=month, day=day)
            except ValueError:
                continue
    raise AssertionError("unreachable: every month has 28 days")
