"""The Account aggregate: one per contract, owner of its sub-balances and of its ledger legs.

Rules every public operation follows:
- The clock is an argument (``now``, timezone-aware); stored instants are UTC, daily rules use
  the school's local day.
- Idempotency: each operation carries its key (payment id, sale id, ride id, ...). The first
  call applies it and remembers the parameters and the result. A repeat with the same
  parameters changes nothing (no entries, no events, no version bump) and returns an equal
  result with ``replayed=True``; a repeat with other parameters raises ``WalletRejected`` with
  ``idempotency_conflict``.
- Balances change only through ledger postings (``_post``), so each balance equals the sum of
  that account's entries by construction; :func:`check_ledger` verifies it from the outside.
- New entries and events accumulate on the account until the caller takes them with
  :meth:`Account.pull_entries` / :meth:`Account.pull_events` (one unit-of-work commit).
- ``version`` grows by one per state-changing call, for optimistic concurrency in the store.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any, get_type_hints

from contracts.money import MAX_AMOUNT, percent_of
from services.wallet.domain._codec import from_plain, to_plain
from services.wallet.domain.events import (
    AccountOpened,
    AutoTopUpCancelled,
    AutoTopUpFailed,
    AutoTopUpRequested,
    BonusesExpired,
    CardBlocked,
    CardReissued,
    CardUnblocked,
    ControlsChanged,
    DisputeApproved,
    DisputeOpened,
    DisputeRejected,
    DomainEvent,
    FareDebited,
    FareDeclined,
    FareRefunded,
    GraceDebtSettled,
    GraceMealGranted,
    LowBalanceReached,
    MoneyMoved,
    SaleApproved,
    SaleDeclined,
    SaleLineRefunded,
    TopUpCredited,
    TransitPaymentsSwitched,
)
from services.wallet.domain.ledger import (
    CounterAccount,
    LedgerEntry,
    Leg,
    OperationKind,
    build_posting,
    ledger_balances,
    unbalanced_operations,
)
from services.wallet.domain.records import (
    AutoTopUpSettings,
    BonusLot,
    Book,
    DailyLimits,
    DaySpend,
    Dispute,
    DisputeStatus,
    ExpiryRecord,
    FareRefundRecord,
    PayoutRecord,
    ReissueRecord,
    RideRecord,
    SaleItem,
    SaleRecord,
    SaleRefundRecord,
    TopUpRecord,
    TransferRecord,
)
from services.wallet.domain.results import (
    DisputeResult,
    FareCorrection,
    FareDecision,
    FareRefundResult,
    FareResult,
    RefundResult,
    SaleDecision,
    SaleResult,
    TopUpResult,
    TransferResult,
)
from services.wallet.domain.schedule import (
    AskState,
    ScheduleAction,
    ScheduledAsk,
    ScheduledTopUp,
    local_midnight,
)
from services.wallet.domain.values import (
    BONUS_BASIS_POINTS,
    BONUS_LIFETIME_MONTHS,
    CONTRACT_PATTERN,
    PREDICTION_WINDOW_DAYS,
    AccountStatus,
    Balances,
    DeclineReason,
    RejectionReason,
    SubBalance,
    TopUpChannel,
    WalletRejected,
    add_months,
    local_day,
    require_amount,
    require_aware,
    require_money_sub_balance,
    zone,
)

_G, _C, _T, _B = SubBalance.GENERAL, SubBalance.CANTEEN, SubBalance.TRANSIT, SubBalance.BONUS
_UNLIMITED = MAX_AMOUNT * 1000
# Transit accepts late taps up to two weeks after a week ends: rides paid since this many days
# before a reissue may still be corrected, so they move to the new contract with the debts.
RIDES_MOVED_ON_REISSUE_DAYS = 35


@dataclass(frozen=True, slots=True)
class Reissue:
    """Outcome of a card reissue. ``new_account`` is None on a replay: it exists already."""

    record: ReissueRecord
    new_account: Account | None
    replayed: bool = field(default=False, compare=False)


# Collections kept as dicts in memory and as lists in the document: external ids may contain
# '.' which MongoDB does not accept in field names.
_KEYED: dict[str, tuple[type[Any], str]] = {
    "top_ups": (TopUpRecord, "payment_id"),
    "sales": (SaleRecord, "sale_id"),
    "rides": (RideRecord, "ride_id"),
    "fare_refunds": (FareRefundRecord, "correction_id"),
    "sale_refunds": (SaleRefundRecord, "refund_id"),
    "transfers": (TransferRecord, "transfer_id"),
    "disputes": (Dispute, "dispute_id"),
    "expiries": (ExpiryRecord, "lot_id"),
}


def _is_open(kind: str, record: Any) -> bool:
    """Records the account document keeps with it: what a later operation must find without
    naming it (a fare still owed is collected by the next top-up; an open dispute blocks a
    second one on the same line)."""
    if kind == "rides":
        return bool(record.owed)
    if kind == "disputes":
        return bool(record.status is DisputeStatus.OPEN)
    return False


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One operation record as the store keeps it apart from the account document."""

    kind: str
    key: str
    at: datetime
    day: str  # the school-local day of ``at`` (a sale: its own sale day)
    open: bool
    plain: dict[str, Any]


def _conflict(kind: str, key: str) -> WalletRejected:
    return WalletRejected(
        RejectionReason.IDEMPOTENCY_CONFLICT, f"{kind} {key!r} was used with other parameters"
    )


def _normalise_tags(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({v.strip().casefold() for v in values if v.strip()}))


def _validate_items(items: Sequence[SaleItem]) -> tuple[SaleItem, ...]:
    if not items:
        raise WalletRejected(RejectionReason.INVALID_SALE, "a sale needs at least one item")
    for n, item in enumerate(items):
        if not isinstance(item, SaleItem):
            raise WalletRejected(RejectionReason.INVALID_SALE, f"line {n} is not a SaleItem")
        for name, value in (("qty", item.qty), ("unit_price", item.unit_price)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise WalletRejected(RejectionReason.INVALID_SALE, f"line {n}: {name} {value!r}")
        if item.qty < 1 or item.unit_price < 0 or not item.sku:
            raise WalletRejected(RejectionReason.INVALID_SALE, f"line {n}: {item!r}")
    if sum(item.total for item in items) > MAX_AMOUNT:
        raise WalletRejected(RejectionReason.INVALID_SALE, "total out of range")
    return tuple(items)


@dataclass(eq=False, kw_only=True)
class Account:
    contract: str
    card_uid: str
    school_id: str
    time_zone: str
    opened_at: datetime
    status: AccountStatus = AccountStatus.ACTIVE
    version: int = 0
    balances_by_sub: dict[SubBalance, int] = field(
        default_factory=lambda: {s: 0 for s in SubBalance}
    )
    bonus_lots: list[BonusLot] = field(default_factory=list)
    limits: DailyLimits = field(default_factory=DailyLimits)
    blocked_categories: tuple[str, ...] = ()
    blocked_items: tuple[str, ...] = ()
    allergens: tuple[str, ...] = ()
    low_balance_threshold: int | None = None
    low_balance_armed: bool = True
    auto_top_up: AutoTopUpSettings = field(default_factory=AutoTopUpSettings)
    auto_top_up_pending: str | None = None
    auto_top_up_pending_amount: int = 0  # what the pending request asked for
    auto_top_up_seq: int = 0
    scheduled_top_up: ScheduledTopUp | None = None  # autopay by date (domain/schedule.py)
    transit_payments: bool = True  # the parent's switch: False declines every fare
    grace_meal_limit: int = 0
    fares_unpaid: bool = False  # a fare was declined for funds: transit deny-lists the card
    block_reason: str | None = None
    daily_spend: list[DaySpend] = field(default_factory=list)
    top_ups: Book[str, TopUpRecord] = field(default_factory=Book)
    sales: Book[str, SaleRecord] = field(default_factory=Book)
    rides: Book[str, RideRecord] = field(default_factory=Book)
    fare_refunds: Book[str, FareRefundRecord] = field(default_factory=Book)
    sale_refunds: Book[str, SaleRefundRecord] = field(default_factory=Book)
    transfers: Book[str, TransferRecord] = field(default_factory=Book)
    disputes: Book[str, Dispute] = field(default_factory=Book)
    expiries: Book[str, ExpiryRecord] = field(default_factory=Book)
    predecessor: ReissueRecord | None = None
    successor: ReissueRecord | None = None
    payout: PayoutRecord | None = None  # the money paid out when the account closed
    closed_at: datetime | None = None
    _events: list[DomainEvent] = field(default_factory=list, init=False, repr=False)
    _entries: list[LedgerEntry] = field(default_factory=list, init=False, repr=False)

    # --- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        *,
        contract: str,
        card_uid: str,
        school_id: str,
        time_zone: str,
        now: datetime,
        grace_meal_limit: int = 0,
        predecessor: ReissueRecord | None = None,
    ) -> Account:
        if not CONTRACT_PATTERN.match(contract):
            raise WalletRejected(RejectionReason.INVALID_SETTING, f"contract {contract!r}")
        zone(time_zone)
        grace = require_amount(grace_meal_limit, allow_zero=True)
        at = require_aware(now)
        account = cls(
            contract=contract,
            card_uid=card_uid,
            school_id=school_id,
            time_zone=time_zone,
            opened_at=at,
            grace_meal_limit=grace,
            predecessor=predecessor,
            version=1,
        )
        account._events.append(
            AccountOpened(
                contract,
                card_uid,
                school_id,
                time_zone,
                predecessor.old_contract if predecessor else None,
                at,
            )
        )
        return account

    # --- reading --------------------------------------------------------------------------------

    @property
    def balances(self) -> Balances:
        b = self.balances_by_sub
        return Balances(general=b[_G], canteen=b[_C], transit=b[_T], bonus=b[_B])

    @property
    def grace_debt(self) -> int:
        """What the child owes after a grace meal; only the canteen balance can go negative."""
        return max(0, -self.balances_by_sub[_C])

    def available_points(self, now: datetime) -> int:
        """Points that can be redeemed at ``now``: lots not yet expired (posted or not)."""
        at = require_aware(now)
        return sum(lot.remaining for lot in self.bonus_lots if lot.expires_at > at)

    def spent_on(self, now: datetime) -> DaySpend:
        """Money paid at the till on the school-local day of ``now``."""
        day = local_day(now, self.time_zone).isoformat()
        for spend in self.daily_spend:
            if spend.day == day:
                return dataclasses.replace(spend)
        return DaySpend(day)

    def days_of_lunches_left(self) -> int | None:
        """About how many school days canteen + general lasts at the child's own pace.

        The pace is the average money spent at the till over the last 14 local days that had
        purchases (days without purchases, such as weekends and holidays, do not dilute it).
        Rounded down; None without history.
        """
        days = [d for d in self.daily_spend if d.total > 0][-PREDICTION_WINDOW_DAYS:]
        spent = sum(d.total for d in days)
        if spent == 0:
            return None
        funds = self.balances.meal_funds
        return 0 if funds <= 0 else funds * len(days) // spent

    def pull_events(self) -> list[DomainEvent]:
        events, self._events = self._events, []
        return events

    def pull_entries(self) -> list[LedgerEntry]:
        entries, self._entries = self._entries, []
        return entries

    @property
    def pending_events(self) -> tuple[DomainEvent, ...]:
        return tuple(self._events)

    # --- top-ups --------------------------------------------------------------------------------

    def top_up(
        self,
        payment_id: str,
        amount: int,
        *,
        now: datetime,
        sub_balance: SubBalance = SubBalance.GENERAL,
        channel: TopUpChannel = TopUpChannel.BANK_CARD,
        auto_top_up_request_id: str | None = None,
    ) -> TopUpResult:
        """Credit a payment. A grace-meal debt is paid back first, the rest goes to the target.

        A top-up answers the pending auto top-up when it names its request id or comes
        through the auto top-up channel (like any credit, it re-arms the low-balance alert once
        canteen + general is back at the threshold: see ``_touch``).
        """
        at = require_aware(now)
        amount = require_amount(amount)
        sub = require_money_sub_balance(sub_balance)
        try:
            channel = TopUpChannel(channel)
        except ValueError:
            raise WalletRejected(RejectionReason.INVALID_SETTING, f"channel {channel!r}") from None
        known = self.top_ups.get(payment_id)
        if known is not None:
            if (known.amount, known.sub_balance, known.channel) != (amount, sub, channel):
                raise _conflict("payment", payment_id)
            return self._top_up_result(known, replayed=True)
        self._require_open()
        debt = self.grace_debt
        settled = min(amount, debt)
        self._post(
            OperationKind.TOP_UP,
            payment_id,
            [(_C, settled, CounterAccount.TOP_UP), (sub, amount - settled, CounterAccount.TOP_UP)],
            at,
        )
        owed = debt > 0 or self.fares_unpaid
        collected = self._collect_owed_fares(payment_id, at, self.version + 1)
        self.fares_unpaid = any(r.owed for r in self.rides.values())
        record = TopUpRecord(
            payment_id, amount, sub, channel, settled, self.balances, at, self.version + 1
        )
        self.top_ups[payment_id] = record
        self._events.append(
            TopUpCredited(
                self.contract, payment_id, amount, sub, channel, settled, self.balances, at
            )
        )
        if owed and self.grace_debt == 0 and not self.fares_unpaid:
            # Paid back a grace meal and every fare the card was refused: it may ride and eat
            # again, which transit learns from this event.
            self._events.append(GraceDebtSettled(
                self.contract, payment_id, at, tuple(r.ride_id for r in collected),
                sum(r.paid for r in collected)))
        if auto_top_up_request_id is not None and self._answer_scheduled(
                auto_top_up_request_id, AskState.PAID) is not None:
            pass  # a scheduled payment does not answer the threshold's request
        elif self.auto_top_up_pending is not None and (
            auto_top_up_request_id == self.auto_top_up_pending
            or channel is TopUpChannel.AUTO_TOP_UP
        ):
            self.auto_top_up_pending = None
        self._touch()
        return self._top_up_result(record)

    def recorded_top_up(self, payment_id: str) -> TopUpCredited:
        """The event of a recorded top-up, as it was first sent (a replay records none)."""
        r = self.top_ups[payment_id]
        return TopUpCredited(self.contract, r.payment_id, r.amount, r.sub_balance, r.channel,
                             r.grace_debt_settled, r.balances_after, r.at)

    def cancel_auto_top_up(self, request_id: str, *, reason: str, now: datetime) -> bool:
        """The integrator could not collect the pending planned payment (``reason`` is its
        code): the parent is told (``AutoTopUpFailed``) and the next debit that finds the money
        below the auto top-up threshold asks again. Nothing is asked at once: a declined card
        would be asked again in a loop.

        A request that is not the pending one (answered by a top-up already, withdrawn, failed
        before, or never made) changes nothing and returns False, so a redelivered failure is
        harmless.
        """
        at = require_aware(now)
        if self.status is not AccountStatus.CLOSED:
            asked = self._answer_scheduled(request_id, AskState.FAILED)
            if asked is not None:
                self._events.append(AutoTopUpFailed(self.contract, request_id, asked.amount,
                                                    reason, at))
                self._touch()
                return True
        if self.auto_top_up_pending is None or self.auto_top_up_pending != request_id:
            return False
        self._require_open()
        amount = self.auto_top_up_pending_amount or self.auto_top_up.amount
        self.auto_top_up_pending = None
        self.auto_top_up_pending_amount = 0
        self._events.append(AutoTopUpFailed(self.contract, request_id, amount, reason, at))
        self._touch()
        return True

    # --- canteen sales --------------------------------------------------------------------------

    def sale(
        self,
        sale_id: str,
        *,
        terminal_id: str,
        items: Sequence[SaleItem],
        now: datetime,
        bonus_points: int = 0,
        bonus_excluded_categories: Iterable[str] = (),
    ) -> SaleResult:
        """Approve or decline a canteen sale; declines are recorded and replayed like approvals.

        Checks, in order: card blocked, allergen, blocked item, blocked category, daily limit,
        funds. Bonus points asked for are capped at the unexpired points held and at the total
        of the lines whose category is not in ``bonus_excluded_categories`` (a wallet setting):
        excluded lines are paid with money only and earn no points either (the accrual is 1 %
        of the money paid for the other lines). The rest is paid from canteen, then general.
        Per-sub-balance daily limits cap what each pocket may give today. If the money is short,
        the school's grace rule may give this one meal on credit (the canteen balance goes
        negative, at most ``grace_meal_limit``) provided no earlier grace debt is outstanding
        and no limit stood in the way.
        A closed account answers ``account_closed`` without recording anything.
        """
        at = require_aware(now)
        lines = _validate_items(items)
        bonus_points = require_amount(bonus_points, allow_zero=True)
        known = self.sales.get(sale_id)
        if known is not None:
            if (known.terminal_id, known.items, known.bonus_requested) != (
                terminal_id,
                lines,
                bonus_points,
            ):
                raise _conflict("sale", sale_id)
            return self._sale_result(known, replayed=True)
        total = sum(item.total for item in lines)
        if self.status is AccountStatus.CLOSED:
            return SaleResult(
                sale_id, False, DeclineReason.ACCOUNT_CLOSED, "", total, 0, 0, 0, 0, 0,
                self.balances,
            )
        spend = self.spent_on(at)
        reason, detail = self._screen(lines)
        excluded = set(_normalise_tags(bonus_excluded_categories))
        excluded_lines = tuple(n for n, item in enumerate(lines)
                               if item.category.strip().casefold() in excluded)
        eligible = total - sum(lines[n].total for n in excluded_lines)
        bonus_used = 0
        plan = (0, 0, 0)
        if reason is None:
            bonus_used = min(bonus_points, self.available_points(at), eligible)
            outcome = self._plan_sale_payment(total - bonus_used, spend)
            if isinstance(outcome, DeclineReason):
                reason = outcome
            else:
                plan = outcome
        record = SaleRecord(
            sale_id=sale_id,
            terminal_id=terminal_id,
            items=lines,
            bonus_requested=bonus_points,
            at=at,
            day=spend.day,
            approved=reason is None,
            reason=reason,
            detail=detail,
            total=total,
            line_refunded=[0] * len(lines),
            bonus_excluded_lines=excluded_lines,
            seq=self.version + 1,
        )
        if reason is not None:
            record.balances_after = self.balances
            self.sales[sale_id] = record
            self._events.append(
                SaleDeclined(self.contract, sale_id, terminal_id, reason, detail, total, at)
            )
            self._touch()
            return self._sale_result(record)
        from_canteen, from_general, grace = plan
        money = total - bonus_used
        accrued = percent_of(eligible - bonus_used, BONUS_BASIS_POINTS)
        self._take_points(bonus_used, at)
        if accrued:
            self._add_points(accrued, at)
        self._post(
            OperationKind.SALE,
            sale_id,
            [
                (_C, -(from_canteen + grace), CounterAccount.REVENUE_CANTEEN),
                (_G, -from_general, CounterAccount.REVENUE_CANTEEN),
                (_B, -bonus_used, CounterAccount.REVENUE_CANTEEN),
                (_B, accrued, CounterAccount.BONUS_ACCRUAL),
            ],
            at,
        )
        spend.total += money
        spend.canteen += from_canteen + grace
        spend.general += from_general
        self._store_spend(spend)
        record.paid_canteen = from_canteen + grace
        record.paid_general = from_general
        record.bonus_used = bonus_used
        record.bonus_accrued = accrued
        record.grace_credit = grace
        record.balances_after = self.balances
        self.sales[sale_id] = record
        self._events.append(
            SaleApproved(
                self.contract, sale_id, terminal_id, lines, total, record.paid_canteen,
                from_general, bonus_used, accrued, grace, self.balances, at,
            )
        )
        if grace:
            self._events.append(GraceMealGranted(self.contract, sale_id, self.grace_debt, at))
        self._after_debit(at, drawn=self._crossing_pocket(
            [(_C, from_canteen), (_G, from_general), (_C, grace)]))
        self._touch()
        return self._sale_result(record)

    def _screen(self, lines: tuple[SaleItem, ...]) -> tuple[DeclineReason | None, str]:
        if self.status is AccountStatus.BLOCKED:
            return DeclineReason.CARD_BLOCKED, self.block_reason or ""
        declared = set(self.allergens)
        for item in lines:
            hit = sorted(declared.intersection(_normalise_tags(item.allergens)))
            if hit:
                return DeclineReason.ALLERGEN, hit[0]
        for item in lines:
            if item.sku.strip().casefold() in self.blocked_items:
                return DeclineReason.BLOCKED_ITEM, item.sku
        for item in lines:
            if item.category.strip().casefold() in self.blocked_categories:
                return DeclineReason.BLOCKED_CATEGORY, item.category
        return None, ""

    def decide_sale(
        self,
        sale_id: str,
        *,
        terminal_id: str,
        items: Sequence[SaleItem],
        sold_at: datetime,
        now: datetime,
        bonus_points: int = 0,
        bonus_excluded_categories: Iterable[str] = (),
    ) -> SaleDecision:
        """Decide a till's sale (:meth:`sale`) and say what answers it.

        The till's own time ``sold_at`` (an offline till uploads later) decides the school day
        of the sale and its daily limit; a clock running ahead never counts beyond ``now``.
        A sale decided before is answered with the recorded decision, at its recorded time; a
        closed account records nothing and is answered with a decline made ``now``.
        """
        before = self.version
        result = self.sale(sale_id, terminal_id=terminal_id, items=items,
                           now=min(sold_at, now), bonus_points=bonus_points,
                           bonus_excluded_categories=bonus_excluded_categories)
        record = self.sales.get(sale_id)
        if self.version != before and record is not None:
            return SaleDecision(result, record.at)
        if record is None:
            closed = SaleDeclined(self.contract, sale_id, terminal_id,
                                  DeclineReason.ACCOUNT_CLOSED, "", result.total, now)
            return SaleDecision(result, now, (closed,))
        return SaleDecision(result, record.at, (self.recorded_sale(sale_id),))

    def recorded_sale(self, sale_id: str) -> SaleApproved | SaleDeclined:
        """The event of a recorded sale, as it was first sent (a replay records none)."""
        r = self.sales[sale_id]
        if r.approved:
            return SaleApproved(self.contract, r.sale_id, r.terminal_id, r.items, r.total,
                                r.paid_canteen, r.paid_general, r.bonus_used, r.bonus_accrued,
                                r.grace_credit, r.balances_after, r.at)
        assert r.reason is not None
        return SaleDeclined(self.contract, r.sale_id, r.terminal_id, r.reason, r.detail, r.total,
                            r.at)

    def _plan_sale_payment(
        self, due: int, spend: DaySpend
    ) -> tuple[int, int, int] | DeclineReason:
        """Split ``due`` into (from canteen, from general, grace credit) or say why not."""
        limits = self.limits
        if limits.total is not None and spend.total + due > limits.total:
            return DeclineReason.DAILY_LIMIT
        canteen = max(0, self.balances_by_sub[_C])
        general = max(0, self.balances_by_sub[_G])
        canteen_room = _UNLIMITED if limits.canteen is None else limits.canteen - spend.canteen
        general_room = _UNLIMITED if limits.general is None else limits.general - spend.general
        canteen_room, general_room = max(0, canteen_room), max(0, general_room)
        from_canteen = min(canteen, canteen_room, due)
        from_general = min(general, general_room, due - from_canteen)
        short = due - from_canteen - from_general
        if short == 0:
            return from_canteen, from_general, 0
        limit_in_the_way = from_canteen < canteen or from_general < general
        if limit_in_the_way:
            return DeclineReason.DAILY_LIMIT
        grace_allowed = (
            self.grace_meal_limit > 0
            and self.balances_by_sub[_C] >= 0
            and short <= self.grace_meal_limit
        )
        if not grace_allowed:
            return DeclineReason.INSUFFICIENT_FUNDS
        if canteen_room - from_canteen < short:
            return DeclineReason.DAILY_LIMIT
        return from_canteen, from_general, short

    # --- transit --------------------------------------------------------------------------------

    def decide_fare(self, ride_id: str, amount: int, *, now: datetime) -> FareDecision:
        """Debit a fare (:meth:`debit_fare`) and say what answers it: a ride decided before is
        answered with its recorded event; a closed account records nothing and is answered
        with a decline made ``now``."""
        before = self.version
        result = self.debit_fare(ride_id, amount, now=now)
        if self.version != before:
            return FareDecision(result)
        if ride_id not in self.rides:
            return FareDecision(result, (FareDeclined(
                self.contract, ride_id, amount, result.reason or DeclineReason.ACCOUNT_CLOSED,
                now),))
        return FareDecision(result, (self.recorded_fare(ride_id),))

    def recorded_fare(self, ride_id: str) -> FareDebited | FareDeclined:
        """The event of a recorded ride, as it was first sent (a replay records none)."""
        r = self.rides[ride_id]
        if r.approved:
            return FareDebited(self.contract, r.ride_id, r.amount, r.paid_transit, r.paid_general,
                               r.balances_after, r.at)
        assert r.reason is not None
        return FareDeclined(self.contract, r.ride_id, r.amount, r.reason, r.at)

    def debit_fare(self, ride_id: str, amount: int, *, now: datetime) -> FareResult:
        """Debit a fare assessed by transit: transit first, then general; never on credit.

        Daily limits do not apply: the ride has already happened when the fare arrives.
        """
        at = require_aware(now)
        amount = require_amount(amount, allow_zero=True)
        known = self.rides.get(ride_id)
        if known is not None:
            if known.amount != amount:
                raise _conflict("ride", ride_id)
            return self._fare_result(known, replayed=True)
        if self.status is AccountStatus.CLOSED:
            return FareResult(
                ride_id, False, DeclineReason.ACCOUNT_CLOSED, amount, 0, 0, self.balances
            )
        transit = max(0, self.balances_by_sub[_T])
        general = max(0, self.balances_by_sub[_G])
        reason: DeclineReason | None = None
        if self.status is AccountStatus.BLOCKED:
            reason = DeclineReason.CARD_BLOCKED
        elif not self.transit_payments:
            reason = DeclineReason.TRANSIT_PAYMENTS_OFF
        elif transit + general < amount:
            reason = DeclineReason.INSUFFICIENT_FUNDS
        record = RideRecord(ride_id, amount, at, reason is None, reason, seq=self.version + 1)
        if reason is None:
            record.paid_transit = min(transit, amount)
            record.paid_general = amount - record.paid_transit
            self._post(
                OperationKind.FARE,
                ride_id,
                [
                    (_T, -record.paid_transit, CounterAccount.REVENUE_TRANSIT),
                    (_G, -record.paid_general, CounterAccount.REVENUE_TRANSIT),
                ],
                at,
            )
            self._events.append(
                FareDebited(
                    self.contract, ride_id, amount, record.paid_transit, record.paid_general,
                    self.balances, at,
                )
            )
        else:
            self.fares_unpaid = self.fares_unpaid or reason is DeclineReason.INSUFFICIENT_FUNDS
            self._events.append(FareDeclined(self.contract, ride_id, amount, reason, at))
        record.balances_after = self.balances
        self.rides[ride_id] = record
        if reason is None:
            self._after_debit(at)
        self._touch()
        return self._fare_result(record)

    def _collect_owed_fares(self, payment_id: str, at: datetime, seq: int) -> list[RideRecord]:
        """Pay the fares declined for lack of money from the money there is now, oldest first
        (transit, then general), as far as it goes: a declined fare is debt, never written
        off. Posted as the ride's own fare operation, so the ledger shows one fare per ride."""
        collected: list[RideRecord] = []
        for ride in sorted((r for r in self.rides.values() if r.owed), key=lambda r: r.seq):
            transit = max(0, self.balances_by_sub[_T])
            general = max(0, self.balances_by_sub[_G])
            if transit + general < ride.due:
                break
            ride.paid_transit = min(transit, ride.due)
            ride.paid_general = ride.due - ride.paid_transit
            self._post(
                OperationKind.FARE,
                ride.ride_id,
                [
                    (_T, -ride.paid_transit, CounterAccount.REVENUE_TRANSIT),
                    (_G, -ride.paid_general, CounterAccount.REVENUE_TRANSIT),
                ],
                at,
            )
            ride.collected_by, ride.collected_at, ride.collected_seq = payment_id, at, seq
            collected.append(ride)
        return collected

    def correct_fare(
        self, correction_id: str, ride_id: str, amount: int, *, now: datetime
    ) -> FareCorrection:
        """Apply a fare correction (:meth:`refund_fare`); a replayed correction that paid money
        back is answered with its recorded refund event."""
        result = self.refund_fare(correction_id, ride_id, amount, now=now)
        if result.replayed and result.paid_back:
            r = self.fare_refunds[correction_id]
            return FareCorrection(result, (FareRefunded(
                self.contract, r.correction_id, r.ride_id, r.amount, r.balances_after, r.at),))
        return FareCorrection(result)

    def refund_fare(
        self, correction_id: str, ride_id: str, amount: int, *, now: datetime
    ) -> FareRefundResult:
        """Apply a transit correction that lowered a fare by ``amount``.

        A fare taken gets money back (never more than was paid). A fare declined for lack of
        money and not collected yet is written down instead: the next top-up collects only
        what it costs now, and if nothing is owed any more the card may ride again
        (``GraceDebtSettled`` naming the correction). A fare declined for any other reason
        cost nothing, so there is nothing to give back: the correction is only recorded.
        """
        at = require_aware(now)
        amount = require_amount(amount)
        known = self.fare_refunds.get(correction_id)
        if known is not None:
            if (known.ride_id, known.amount) != (ride_id, amount):
                raise _conflict("fare correction", correction_id)
            return self._fare_refund_result(known, replayed=True)
        record = self._refund_fare(correction_id, ride_id, amount, at)
        self._touch()
        return self._fare_refund_result(record)

    def _refund_fare(
        self, correction_id: str, ride_id: str, amount: int, at: datetime
    ) -> FareRefundRecord:
        ride = self.rides.get(ride_id)
        if ride is None:
            raise WalletRejected(RejectionReason.UNKNOWN_RIDE, ride_id)
        if not ride.charged:
            return self._write_down_fare(correction_id, ride, amount, at)
        self._require_open()
        if amount > ride.paid - ride.refunded:
            raise WalletRejected(
                RejectionReason.REFUND_EXCEEDS_CHARGE,
                f"ride {ride_id}: {amount} > {ride.paid - ride.refunded}",
            )
        to_transit = min(amount, ride.paid_transit - ride.refunded_transit)
        to_general = amount - to_transit
        self._post(
            OperationKind.FARE_REFUND,
            correction_id,
            [
                (_T, to_transit, CounterAccount.REVENUE_TRANSIT),
                (_G, to_general, CounterAccount.REVENUE_TRANSIT),
            ],
            at,
        )
        ride.refunded_transit += to_transit
        ride.refunded_general += to_general
        record = FareRefundRecord(
            correction_id, ride_id, amount, to_transit, to_general, self.balances, at,
            self.version + 1,
        )
        self.fare_refunds[correction_id] = record
        self._events.append(
            FareRefunded(self.contract, correction_id, ride_id, amount, self.balances, at)
        )
        return record

    def _write_down_fare(
        self, correction_id: str, ride: RideRecord, amount: int, at: datetime
    ) -> FareRefundRecord:
        owed_before = self.fares_unpaid
        written = 0
        if ride.owed:
            if amount > ride.due:
                raise WalletRejected(RejectionReason.REFUND_EXCEEDS_CHARGE,
                                     f"ride {ride.ride_id}: {amount} > owed {ride.due}")
            written = amount
            ride.written_down += amount
        record = FareRefundRecord(correction_id, ride.ride_id, amount, 0, 0, self.balances, at,
                                  self.version + 1, written_down=written)
        self.fare_refunds[correction_id] = record
        self.fares_unpaid = any(r.owed for r in self.rides.values())
        if owed_before and not self.fares_unpaid and self.grace_debt == 0:
            self._events.append(GraceDebtSettled(self.contract, None, at,
                                                 correction_id=correction_id))
        return record

    def fare_successor(self, ride_id: str) -> str | None:
        """The contract that now answers for a fare of this card: after a reissue, a new fare
        of the old card and the corrections of the rides that moved are the new account's."""
        ride = self.rides.get(ride_id)
        if self.status is AccountStatus.CLOSED and self.successor is not None and (
                ride is None or ride.moved_to is not None):
            return self.successor.new_contract
        return None

    def _charged_ride(self, ride_id: str) -> RideRecord:
        ride = self.rides.get(ride_id)
        if ride is None:
            raise WalletRejected(RejectionReason.UNKNOWN_RIDE, ride_id)
        if not ride.charged:
            raise WalletRejected(RejectionReason.NOT_CHARGED, f"ride {ride_id} was declined")
        return ride

    # --- sale refunds and disputes --------------------------------------------------------------

    def refund_sale_line(
        self,
        refund_id: str,
        sale_id: str,
        line_no: int,
        amount: int,
        *,
        staff_id: str,
        now: datetime,
    ) -> RefundResult:
        """Staff reversal of (part of) one sale line, at most what is still unrefunded.

        The money part of the sale is given back first (to canteen as far as canteen paid, then
        general); beyond that, the points redeemed come back as a new lot. Points accrued on the
        money now refunded are taken back (rounded the same way as the accrual), as far as the
        child still holds points.
        """
        at = require_aware(now)
        amount = require_amount(amount)
        known = self.sale_refunds.get(refund_id)
        if known is not None:
            if (known.sale_id, known.line_no, known.amount) != (sale_id, line_no, amount):
                raise _conflict("refund", refund_id)
            return self._refund_result(known, replayed=True)
        self._require_open()
        record = self._refund_sale_line(refund_id, sale_id, line_no, amount, staff_id, None, at)
        self._touch()
        return self._refund_result(record)

    def _refund_sale_line(
        self,
        refund_id: str,
        sale_id: str,
        line_no: int,
        amount: int,
        staff_id: str,
        dispute_id: str | None,
        at: datetime,
    ) -> SaleRefundRecord:
        sale = self._charged_sale(sale_id, line_no)
        if amount > sale.refundable(line_no):
            raise WalletRejected(
                RejectionReason.REFUND_EXCEEDS_CHARGE,
                f"sale {sale_id} line {line_no}: {amount} > {sale.refundable(line_no)}",
            )
        money_left = sale.paid_money - sale.refunded_canteen - sale.refunded_general
        money = min(amount, money_left)
        to_canteen = min(money, sale.paid_canteen - sale.refunded_canteen)
        to_general = money - to_canteen
        points_back = amount - money
        money_kept = money_left - money
        # Lines excluded from bonuses earned nothing: the money kept for them first, only the
        # rest of the money kept still carries its accrual.
        excluded_kept = sum(
            sale.items[n].total - sale.line_refunded[n] - (amount if n == line_no else 0)
            for n in sale.bonus_excluded_lines
        )
        owed = sale.bonus_accrued - sale.bonus_clawed_back
        owed -= percent_of(max(0, money_kept - excluded_kept), BONUS_BASIS_POINTS)
        clawed = self._claw_points(max(0, owed), self._lot_of(sale.at))
        if points_back:
            self._add_points(points_back, at)
        self._post(
            OperationKind.SALE_REFUND,
            refund_id,
            [
                (_C, to_canteen, CounterAccount.REVENUE_CANTEEN),
                (_G, to_general, CounterAccount.REVENUE_CANTEEN),
                (_B, points_back, CounterAccount.REVENUE_CANTEEN),
                (_B, -clawed, CounterAccount.BONUS_ACCRUAL),
            ],
            at,
        )
        sale.line_refunded[line_no] += amount
        sale.refunded_canteen += to_canteen
        sale.refunded_general += to_general
        sale.refunded_bonus += points_back
        sale.bonus_clawed_back += clawed
        record = SaleRefundRecord(
            refund_id, sale_id, line_no, amount, to_canteen, to_general, points_back, clawed,
            staff_id, dispute_id, self.balances, at, self.version + 1,
        )
        self.sale_refunds[refund_id] = record
        self._events.append(
            SaleLineRefunded(
                self.contract, refund_id, sale_id, line_no, amount, money, points_back, clawed,
                staff_id, dispute_id, self.balances, at,
            )
        )
        return record

    def _charged_sale(self, sale_id: str, line_no: int) -> SaleRecord:
        sale = self.sales.get(sale_id)
        if sale is None:
            raise WalletRejected(RejectionReason.UNKNOWN_SALE, sale_id)
        if not sale.approved:
            raise WalletRejected(RejectionReason.NOT_CHARGED, f"sale {sale_id} was declined")
        if not isinstance(line_no, int) or not 0 <= line_no < len(sale.items):
            raise WalletRejected(RejectionReason.UNKNOWN_SALE_LINE, f"{sale_id} line {line_no}")
        return sale

    def open_dispute(
        self,
        dispute_id: str,
        *,
        now: datetime,
        sale_id: str | None = None,
        line_no: int | None = None,
        ride_id: str | None = None,
        comment: str = "",
    ) -> DisputeResult:
        """Flag one statement line: a sale line (``sale_id`` + ``line_no``) or a ride.

        One open dispute per line at a time; a line with nothing left to refund cannot be
        disputed. The comment is not part of the idempotency comparison.
        """
        at = require_aware(now)
        on_sale = sale_id is not None and line_no is not None and ride_id is None
        on_ride = ride_id is not None and sale_id is None and line_no is None
        if not (on_sale or on_ride):
            raise WalletRejected(
                RejectionReason.INVALID_DISPUTE, "name a sale line or a ride, not both"
            )
        known = self.disputes.get(dispute_id)
        if known is not None:
            if (known.sale_id, known.line_no, known.ride_id) != (sale_id, line_no, ride_id):
                raise _conflict("dispute", dispute_id)
            return self._dispute_result(known, replayed=True)
        self._require_open()
        remaining = self._disputable(sale_id, line_no, ride_id)
        if remaining == 0:
            raise WalletRejected(RejectionReason.NOTHING_TO_REFUND, "the line is fully refunded")
        for other in self.disputes.values():
            same_line = (other.sale_id, other.line_no, other.ride_id) == (sale_id, line_no, ride_id)
            if same_line and other.status is DisputeStatus.OPEN:
                raise WalletRejected(RejectionReason.DISPUTE_ALREADY_OPEN, other.dispute_id)
        dispute = Dispute(dispute_id, sale_id, line_no, ride_id, comment, at, remaining)
        self.disputes[dispute_id] = dispute
        self._events.append(
            DisputeOpened(self.contract, dispute_id, sale_id, line_no, ride_id, remaining, at)
        )
        self._touch()
        return self._dispute_result(dispute)

    def dispute_operation(
        self,
        dispute_id: str,
        operation_id: str,
        line_no: int | None,
        *,
        now: datetime,
        comment: str = "",
    ) -> DisputeResult:
        """Open a dispute naming a statement line by operation id: a sale (with its line, or
        without one when the sale has a single line) or a ride."""
        if operation_id in self.sales:
            sale = self.sales[operation_id]
            if line_no is None and len(sale.items) == 1:
                line_no = 0
            if line_no is None:
                raise WalletRejected(RejectionReason.INVALID_DISPUTE,
                                     f"sale {operation_id} has several lines: name one")
            return self.open_dispute(dispute_id, now=now, sale_id=operation_id,
                                     line_no=line_no, comment=comment)
        if operation_id in self.rides and line_no is None:
            return self.open_dispute(dispute_id, now=now, ride_id=operation_id, comment=comment)
        raise WalletRejected(RejectionReason.UNKNOWN_SALE, operation_id)

    def _disputable(self, sale_id: str | None, line_no: int | None, ride_id: str | None) -> int:
        if sale_id is not None and line_no is not None:
            return self._charged_sale(sale_id, line_no).refundable(line_no)
        assert ride_id is not None
        ride = self._charged_ride(ride_id)
        return ride.amount - ride.refunded

    def approve_dispute(
        self, dispute_id: str, *, refund_amount: int, staff_id: str, now: datetime
    ) -> DisputeResult:
        """Staff approve with a refund of at most what is still unrefunded on the line.

        The refund id is ``dispute:<dispute id>``, so approving twice can never refund twice.
        """
        at = require_aware(now)
        refund_amount = require_amount(refund_amount)
        dispute = self._dispute(dispute_id)
        if dispute.status is DisputeStatus.APPROVED:
            if dispute.refund_amount != refund_amount:
                raise _conflict("dispute approval", dispute_id)
            return self._dispute_result(dispute, replayed=True)
        if dispute.status is not DisputeStatus.OPEN:
            raise WalletRejected(RejectionReason.DISPUTE_NOT_OPEN, dispute.status.value)
        self._require_open()
        refund_id = f"dispute:{dispute_id}"
        if dispute.sale_id is not None and dispute.line_no is not None:
            self._refund_sale_line(
                refund_id, dispute.sale_id, dispute.line_no, refund_amount, staff_id,
                dispute_id, at,
            )
        else:
            assert dispute.ride_id is not None
            self._refund_fare(refund_id, dispute.ride_id, refund_amount, at)
        dispute.status = DisputeStatus.APPROVED
        dispute.refund_amount = refund_amount
        dispute.staff_id = staff_id
        dispute.resolved_at = at
        self._events.append(DisputeApproved(self.contract, dispute_id, refund_amount, staff_id, at))
        self._touch()
        return self._dispute_result(dispute)

    def reject_dispute(
        self, dispute_id: str, *, staff_id: str, now: datetime, note: str = ""
    ) -> DisputeResult:
        at = require_aware(now)
        dispute = self._dispute(dispute_id)
        if dispute.status is DisputeStatus.REJECTED:
            return self._dispute_result(dispute, replayed=True)
        if dispute.status is not DisputeStatus.OPEN:
            raise WalletRejected(RejectionReason.DISPUTE_NOT_OPEN, dispute.status.value)
        self._require_open()
        dispute.status = DisputeStatus.REJECTED
        dispute.staff_id = staff_id
        dispute.note = note
        dispute.resolved_at = at
        self._events.append(DisputeRejected(self.contract, dispute_id, staff_id, note, at))
        self._touch()
        return self._dispute_result(dispute)

    def records_to_resolve(self, dispute_id: str) -> dict[str, list[str]]:
        """The records resolving a dispute reads besides the dispute: the line it names."""
        dispute = self.disputes.get(dispute_id)
        if dispute is None:
            return {}
        if dispute.sale_id is not None:
            return {"sales": [dispute.sale_id]}
        return {"rides": [dispute.ride_id]} if dispute.ride_id is not None else {}

    def _dispute(self, dispute_id: str) -> Dispute:
        dispute = self.disputes.get(dispute_id)
        if dispute is None:
            raise WalletRejected(RejectionReason.UNKNOWN_DISPUTE, dispute_id)
        return dispute

    # --- parent controls and school settings ----------------------------------------------------

    def apply_controls(
        self,
        *,
        now: datetime,
        by: str | None = None,
        limits: DailyLimits | None = None,
        blocked_categories: Iterable[str] | None = None,
        blocked_items: Iterable[str] | None = None,
        allergens: Iterable[str] | None = None,
        low_balance_threshold: int | None = None,
    ) -> bool:
        """Change several parent controls at once (None leaves one unchanged); all or nothing:
        every value is validated before any is applied. True when anything changed."""
        for value in (
            *((limits.total, limits.canteen, limits.general) if limits else ()),
            low_balance_threshold,
        ):
            if value is not None:
                require_amount(value, allow_zero=True)
        self._require_open()
        changed = False
        if limits is not None:
            changed |= self.set_daily_limits(limits, now=now, by=by)
        if blocked_categories is not None:
            changed |= self.set_blocked_categories(blocked_categories, now=now, by=by)
        if blocked_items is not None:
            changed |= self.set_blocked_items(blocked_items, now=now, by=by)
        if allergens is not None:
            changed |= self.set_allergens(allergens, now=now, by=by)
        if low_balance_threshold is not None:
            changed |= self.set_low_balance_threshold(low_balance_threshold, now=now, by=by)
        return changed

    def set_daily_limits(
        self, limits: DailyLimits, *, now: datetime, by: str | None = None
    ) -> bool:
        """Replace the daily limits; returns False (and changes nothing) when they are equal.

        A lower limit applies at once to what is left of today, counted from local midnight.
        """
        for value in (limits.total, limits.canteen, limits.general):
            if value is not None:
                require_amount(value, allow_zero=True)
        return self._set_control("limits", "daily_limits", limits, now, by)

    def set_blocked_categories(
        self, categories: Iterable[str], *, now: datetime, by: str | None = None
    ) -> bool:
        value = _normalise_tags(categories)
        return self._set_control("blocked_categories", "blocked_categories", value, now, by)

    def set_blocked_items(
        self, skus: Iterable[str], *, now: datetime, by: str | None = None
    ) -> bool:
        return self._set_control("blocked_items", "blocked_items", _normalise_tags(skus), now, by)

    def set_allergens(
        self, allergens: Iterable[str], *, now: datetime, by: str | None = None
    ) -> bool:
        return self._set_control("allergens", "allergens", _normalise_tags(allergens), now, by)

    def set_low_balance_threshold(
        self, threshold: int | None, *, now: datetime, by: str | None = None
    ) -> bool:
        """Set or clear the threshold on canteen + general.

        Setting it is not a crossing: the alert is armed only if the money is at or above the
        new threshold, so a parent who sets it above the current balance is warned after the
        next top-up lifts the balance and spending brings it down again.
        """
        if threshold is not None:
            require_amount(threshold, allow_zero=True)
        changed = self._set_control("low_balance_threshold", "low_balance_threshold",
                                    threshold, now, by)
        if changed:
            self.low_balance_armed = threshold is None or self.balances.meal_funds >= threshold
        return changed

    def set_auto_top_up(
        self, settings: AutoTopUpSettings, *, now: datetime, by: str | None = None
    ) -> bool:
        """Change the planned payment; enabling it below the threshold requests one at once."""
        at = require_aware(now)
        settings = dataclasses.replace(
            settings, sub_balance=require_money_sub_balance(settings.sub_balance)
        )
        require_amount(settings.threshold, allow_zero=True)
        require_amount(settings.amount, allow_zero=not settings.enabled)
        changed = self._set_control("auto_top_up", "auto_top_up", settings, at, by)
        if changed:
            self._check_auto_top_up(at)
        return changed

    # --- autopay by date and the services switches ------------------------------------------

    def set_scheduled_top_up(self, days: Sequence[int], amount: int, sub_balance: SubBalance,
                             *, now: datetime, by: str | None = None) -> bool:
        """Plan (or change) the autopay by date: ``amount`` on each of ``days`` of the month,
        from today on; a paused plan stays paused. See ``domain/schedule.py``."""
        at = require_aware(now)
        self._require_open()
        plan = ScheduledTopUp.plan(tuple(days), amount, sub_balance,
                                   today=local_day(at, self.time_zone),
                                   previous=self.scheduled_top_up)
        return self._set_control("scheduled_top_up", "scheduled_top_up", plan, at, by)

    def switch_scheduled_top_up(self, action: ScheduleAction, *, now: datetime,
                                by: str | None = None) -> bool:
        """Pause, resume or remove the autopay by date (``unknown_schedule`` when there is
        none); a repeated switch changes nothing."""
        at = require_aware(now)
        self._require_open()
        if self.scheduled_top_up is None:
            if action is ScheduleAction.REMOVE:
                return False
            raise WalletRejected(RejectionReason.UNKNOWN_SCHEDULE, "no autopay by date is set")
        switched = self.scheduled_top_up.switched(ScheduleAction(action),
                                                  today=local_day(at, self.time_zone))
        return self._set_control("scheduled_top_up", "scheduled_top_up", switched, at, by)

    def ask_scheduled_top_up(self, *, now: datetime, catch_up_days: int) -> ScheduledAsk | None:
        """The scheduler's call: ask the payment integrator for the due date that has come
        (``AutoTopUpRequested`` with reason ``schedule``), at most once per due date. Nothing
        on a closed or blocked account: the due dates pass (a lost card is not topped up)."""
        at = require_aware(now)
        plan = self.scheduled_top_up
        if plan is None:
            return None
        today = local_day(at, self.time_zone)
        settled, asked = plan.ask(self.contract, today=today, catch_up_days=catch_up_days)
        if settled == plan:
            return None
        if self.status is not AccountStatus.ACTIVE:
            asked = None
            settled = dataclasses.replace(plan, covered_through=settled.covered_through)
        self.scheduled_top_up = settled
        if asked is not None:
            self._events.append(AutoTopUpRequested(
                self.contract, asked.request_id, asked.amount, settled.sub_balance, at,
                reason="schedule", due_date=asked.due_date))
        self._touch()
        return asked

    def next_scheduled_due_at(self) -> datetime | None:
        """When the next due date of the autopay by date begins (school-local midnight), for
        the scheduler's index; None without an active plan."""
        plan = self.scheduled_top_up
        due = plan.next_due() if plan is not None and self.status is not AccountStatus.CLOSED \
            else None
        return local_midnight(due, self.time_zone) if due is not None else None

    def _answer_scheduled(self, request: str, state: AskState) -> ScheduledAsk | None:
        if self.scheduled_top_up is None:
            return None
        self.scheduled_top_up, asked = self.scheduled_top_up.answered(request, state)
        return asked

    def set_transit_payments(self, enabled: bool, *, now: datetime,
                             by: str | None = None) -> bool:
        """The services switch for transit payments: off, every fare is declined
        ``transit_payments_off`` (the gate and the canteen still take the card)."""
        changed = self._set_control("transit_payments", "transit_payments", bool(enabled), now,
                                    by)
        if changed:
            self._events.append(TransitPaymentsSwitched(self.contract, bool(enabled), by,
                                                        require_aware(now)))
        return changed

    def pay_out(self, payout_id: str, *, now: datetime) -> int:
        """Pay the remaining money out on leaving the school (a done refund application) and
        close the account: one ledger operation ``payout:<payout_id>`` zeroes every money
        sub-balance against ``external:payout``. Returns the kopecks paid out. Refused while
        the child owes money (a grace meal, an unpaid fare: ``debt_outstanding``) and on a
        closed account; bonus points are not money and are not paid out."""
        at = require_aware(now)
        self._require_open()
        if self.grace_debt > 0 or self.fares_unpaid or self.balances.money < 0:
            raise WalletRejected(RejectionReason.DEBT_OUTSTANDING,
                                 "the child owes money: settle it before the refund")
        paid = self.balances.money
        self._post(OperationKind.PAYOUT, payout_id,
                   [(sub, -self.balances_by_sub[sub], CounterAccount.PAYOUT)
                    for sub in (_G, _C, _T)], at)
        self._withdraw_planned_payments(at)
        self.status = AccountStatus.CLOSED
        self.closed_at = at
        self.payout = PayoutRecord(payout_id, paid, at, self.version + 1)
        self._touch()
        return paid

    def _withdraw_planned_payments(self, at: datetime) -> None:
        """The account closes: every planned payment still pending (the threshold's and the
        due dates') is withdrawn from the integrator (``AutoTopUpCancelled``)."""
        if self.auto_top_up_pending is not None:
            self._events.append(AutoTopUpCancelled(self.contract, self.auto_top_up_pending, at))
            self.auto_top_up_pending = None
        if self.scheduled_top_up is not None:
            self.scheduled_top_up, pending = self.scheduled_top_up.withdrawn()
            self._events.extend(AutoTopUpCancelled(self.contract, a.request_id, at)
                                for a in pending)

    def set_grace_meal_limit(self, limit: int, *, now: datetime, by: str | None = None) -> bool:
        """School setting: the deepest debt one grace meal may leave (0 disables the rule)."""
        limit = require_amount(limit, allow_zero=True)
        return self._set_control("grace_meal_limit", "grace_meal_limit", limit, now, by)

    def block_card(
        self, *, now: datetime, reason: str = "lost", by: str | None = None
    ) -> bool:
        """Block a lost card: the balance stays, sales and fares are declined until unblocked."""
        at = require_aware(now)
        self._require_open()
        if self.status is AccountStatus.BLOCKED:
            return False
        self.status = AccountStatus.BLOCKED
        self.block_reason = reason
        self._events.append(CardBlocked(self.contract, reason, by, at))
        self._touch()
        return True

    def unblock_card(self, *, now: datetime, by: str | None = None) -> bool:
        at = require_aware(now)
        self._require_open()
        if self.status is AccountStatus.ACTIVE:
            return False
        self.status = AccountStatus.ACTIVE
        self.block_reason = None
        self._events.append(CardUnblocked(self.contract, by, at))
        self._touch()
        return True

    def move_money(
        self,
        transfer_id: str,
        *,
        source: SubBalance,
        target: SubBalance,
        amount: int,
        now: datetime,
    ) -> TransferResult:
        """Move money between two sub-balances ("paid into the wrong balance").

        Only what the source holds can move; moving into a canteen in grace debt pays it back.
        """
        at = require_aware(now)
        amount = require_amount(amount)
        source = require_money_sub_balance(source)
        target = require_money_sub_balance(target)
        if source is target:
            raise WalletRejected(RejectionReason.INVALID_SUB_BALANCE, "source is the target")
        known = self.transfers.get(transfer_id)
        if known is not None:
            if (known.source, known.target, known.amount) != (source, target, amount):
                raise _conflict("transfer", transfer_id)
            return self._transfer_result(known, replayed=True)
        self._require_open()
        if self.balances_by_sub[source] < amount:
            raise WalletRejected(
                RejectionReason.INSUFFICIENT_FUNDS,
                f"{source.value} holds {self.balances_by_sub[source]}",
            )
        self._post(
            OperationKind.TRANSFER,
            f"{self.contract}:{transfer_id}",
            [(source, -amount, CounterAccount.TRANSFER), (target, amount, CounterAccount.TRANSFER)],
            at,
        )
        record = TransferRecord(
            transfer_id, source, target, amount, self.balances, at, self.version + 1
        )
        self.transfers[transfer_id] = record
        self._events.append(
            MoneyMoved(self.contract, transfer_id, source, target, amount, self.balances, at)
        )
        self._after_debit(at, drawn=source)  # the one draw of a move
        self._touch()
        return self._transfer_result(record)

    # --- bonuses --------------------------------------------------------------------------------

    def expire_bonuses(self, *, now: datetime) -> int:
        """Post the expiry of every lot whose 12 months are over; returns the points expired.

        Each lot expires in its own operation (``<contract>:<lot id>``), so running this twice,
        or from two schedulers, expires nothing twice.
        """
        at = require_aware(now)
        if self.status is AccountStatus.CLOSED:
            return 0
        due = [lot for lot in self.bonus_lots if lot.expires_at <= at and lot.remaining > 0]
        if not due:
            return 0
        for lot in due:
            self._post(
                OperationKind.BONUS_EXPIRY,
                f"{self.contract}:{lot.lot_id}",
                [(_B, -lot.remaining, CounterAccount.BONUS_EXPIRY)],
                at,
            )
            self.expiries[lot.lot_id] = ExpiryRecord(lot.lot_id, lot.remaining, at,
                                                     self.version + 1)
        points = sum(lot.remaining for lot in due)
        for lot in due:
            lot.remaining = 0
        self.bonus_lots = [lot for lot in self.bonus_lots if lot.remaining > 0]
        self._events.append(
            BonusesExpired(self.contract, points, tuple(lot.lot_id for lot in due), at)
        )
        self._touch()
        return points

    def _lot_of(self, at: datetime) -> str:
        """Points accrued in one school-local month form one lot (``month:YYYY-MM``)."""
        return f"month:{local_day(at, self.time_zone).isoformat()[:7]}"

    def _add_points(self, points: int, at: datetime) -> None:
        """Add to the lot of the local month of ``at``. The lot burns at the end of that month
        twelve months later (local midnight), so every point lives at least 12 months and an
        account holds at most 13 lots whatever its history."""
        lot_id = self._lot_of(at)
        for lot in self.bonus_lots:
            if lot.lot_id == lot_id:
                lot.amount += points
                lot.remaining += points
                return
        first = local_day(at, self.time_zone).replace(day=1)
        month_end = datetime.combine(first, datetime.min.time(), zone(self.time_zone))
        expires = add_months(month_end, BONUS_LIFETIME_MONTHS + 1)
        self.bonus_lots.append(BonusLot(lot_id, at, expires, points, points))

    def _take_points(self, points: int, at: datetime) -> None:
        """Redeem from unexpired lots, the soonest to expire first."""
        for lot in sorted(self.bonus_lots, key=lambda lot: (lot.expires_at, lot.lot_id)):
            if points == 0:
                break
            if lot.expires_at <= at:
                continue
            taken = min(points, lot.remaining)
            lot.remaining -= taken
            points -= taken
        if points:
            raise AssertionError("redeemed more points than available")
        self.bonus_lots = [lot for lot in self.bonus_lots if lot.remaining > 0]

    def _claw_points(self, points: int, preferred_lot: str) -> int:
        """Take back up to ``points``, from the sale's own lot first; returns what was taken."""
        taken_total = 0
        ordered = sorted(
            self.bonus_lots,
            key=lambda lot: (lot.lot_id != preferred_lot, lot.expires_at, lot.lot_id),
        )
        for lot in ordered:
            if taken_total == points:
                break
            taken = min(points - taken_total, lot.remaining)
            lot.remaining -= taken
            taken_total += taken
        self.bonus_lots = [lot for lot in self.bonus_lots if lot.remaining > 0]
        return taken_total

    # --- internals ------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self.status is AccountStatus.CLOSED:
            successor = self.successor.new_contract if self.successor else ""
            raise WalletRejected(RejectionReason.ACCOUNT_CLOSED, successor)

    def _touch(self) -> None:
        """The end of every state-changing operation: bump the version, and re-arm the
        low-balance alert when canteen + general is back at or above the threshold, whatever
        lifted it (a top-up, a sale or fare refund, a move, an approved dispute). An alert is
        disarmed only below the threshold, so this never re-arms one that should stay quiet."""
        threshold = self.low_balance_threshold
        if threshold is not None and self.balances.meal_funds >= threshold:
            self.low_balance_armed = True
        self.version += 1

    def _post(self, kind: OperationKind, operation_id: str, legs: list[Leg], at: datetime) -> None:
        entries = build_posting(self.contract, kind, operation_id, legs, at)
        after = dict(self.balances_by_sub)
        for entry in entries:
            if entry.account == self.contract and entry.sub_balance is not None:
                after[entry.sub_balance] += entry.amount
        if any(amount > MAX_AMOUNT for amount in after.values()):
            # No pocket holds more than any one amount may be (the wire's bound): the money
            # stays with whoever sent it (a top-up is rejected and reversed by its bank).
            raise WalletRejected(RejectionReason.BALANCE_LIMIT,
                                 f"a balance above {MAX_AMOUNT} kopecks")
        self.balances_by_sub.update(after)
        self._entries.extend(entries)

    def _set_control(
        self, attribute: str, what: str, value: object, now: datetime, by: str | None
    ) -> bool:
        at = require_aware(now)
        self._require_open()
        if getattr(self, attribute) == value:
            return False
        setattr(self, attribute, value)
        self._events.append(ControlsChanged(self.contract, what, to_plain(value), by, at))
        self._touch()
        return True

    def _store_spend(self, spend: DaySpend) -> None:
        days = [*(d for d in self.daily_spend if d.day != spend.day), spend]
        days.sort(key=lambda d: d.day)
        # Enough history for the prediction window; today is always among the newest.
        self.daily_spend = days[-(PREDICTION_WINDOW_DAYS + 1):]

    def _crossing_pocket(self, draws: Sequence[tuple[SubBalance, int]]) -> SubBalance:
        """The pocket whose draw took canteen + general below the threshold, replaying the
        debit's draws in order from the funds before it (already posted); the last pocket
        drawn when none crossed."""
        funds = self.balances.meal_funds + sum(amount for _, amount in draws)
        threshold = self.low_balance_threshold
        for pocket, amount in draws:
            funds -= amount
            if amount and threshold is not None and funds < threshold:
                return pocket
        return next((pocket for pocket, amount in reversed(draws) if amount), _G)

    def _after_debit(self, at: datetime, drawn: SubBalance = _G) -> None:
        """Low-balance alert and auto top-up after money left the account.

        ``drawn`` is the pocket whose draw crossed the threshold, reported with the alert (see
        ``_crossing_pocket``); a fare lowers canteen + general only through general, hence the
        default.
        """
        funds = self.balances.meal_funds
        threshold = self.low_balance_threshold
        if threshold is not None and self.low_balance_armed and funds < threshold:
            self.low_balance_armed = False
            self._events.append(LowBalanceReached(
                self.contract, funds, threshold, self.days_of_lunches_left(), at, drawn))
        self._check_auto_top_up(at)

    def _check_auto_top_up(self, at: datetime) -> None:
        """One request per crossing: nothing more is asked while a request is unanswered.

        The measure is the money the target pocket's spending draws on: canteen + general for
        canteen or general, transit + general for transit. The request id is deterministic
        (``auto-<contract>-<n>``), so a replayed computation names the same planned payment.
        """
        settings = self.auto_top_up
        if not settings.enabled or self.auto_top_up_pending is not None:
            return
        b = self.balances
        funds = b.transit + b.general if settings.sub_balance is _T else b.meal_funds
        if funds >= settings.threshold:
            return
        self.auto_top_up_seq += 1
        request_id = f"auto-{self.contract}-{self.auto_top_up_seq}"
        self.auto_top_up_pending = request_id
        self.auto_top_up_pending_amount = settings.amount
        self._events.append(
            AutoTopUpRequested(self.contract, request_id, settings.amount, settings.sub_balance, at)
        )

    # --- results from records -------------------------------------------------------------------

    @staticmethod
    def _top_up_result(r: TopUpRecord, *, replayed: bool = False) -> TopUpResult:
        return TopUpResult(
            r.payment_id, r.amount, r.sub_balance, r.grace_debt_settled, r.balances_after,
            replayed,
        )

    @staticmethod
    def _sale_result(r: SaleRecord, *, replayed: bool = False) -> SaleResult:
        return SaleResult(
            r.sale_id, r.approved, r.reason, r.detail, r.total, r.paid_canteen, r.paid_general,
            r.bonus_used, r.bonus_accrued, r.grace_credit, r.balances_after, replayed,
        )

    @staticmethod
    def _fare_result(r: RideRecord, *, replayed: bool = False) -> FareResult:
        """The decision as it was made: a declined fare collected later still replays as
        declined with nothing paid (the collection is the top-up's outcome)."""
        paid = (r.paid_transit, r.paid_general) if r.approved else (0, 0)
        return FareResult(r.ride_id, r.approved, r.reason, r.amount, *paid, r.balances_after,
                          replayed)

    @staticmethod
    def _fare_refund_result(r: FareRefundRecord, *, replayed: bool = False) -> FareRefundResult:
        return FareRefundResult(r.correction_id, r.ride_id, r.amount, r.balances_after, replayed,
                                r.money)

    @staticmethod
    def _refund_result(r: SaleRefundRecord, *, replayed: bool = False) -> RefundResult:
        return RefundResult(
            r.refund_id, r.sale_id, r.line_no, r.amount, r.money, r.bonus_restored,
            r.bonus_clawed_back, r.balances_after, replayed,
        )

    @staticmethod
    def _transfer_result(r: TransferRecord, *, replayed: bool = False) -> TransferResult:
        return TransferResult(r.transfer_id, r.source, r.target, r.amount, r.balances_after,
                              replayed)

    @staticmethod
    def _dispute_result(d: Dispute, *, replayed: bool = False) -> DisputeResult:
        return DisputeResult(d.dispute_id, d.status, d.disputed_amount, d.refund_amount, replayed)

    # --- persistence ----------------------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        """The account's own state as a BSON-friendly document (no ``_id``: the store keys it
        by ``contract``). Operation records are not in it (see :meth:`history`), except the
        open ones under ``open`` as ``[kind, record]`` pairs: the document stays the same size
        however long the account lives."""
        doc: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.init and f.name not in _KEYED:
                doc[f.name] = to_plain(getattr(self, f.name))
        doc["open"] = [[kind, to_plain(record)] for kind in _KEYED
                       for record in getattr(self, kind).values() if _is_open(kind, record)]
        return doc

    def history(self) -> list[HistoryRow]:
        """Every operation record in memory (open, loaded or new), for the store to keep."""
        rows = []
        for kind in _KEYED:
            for key, record in getattr(self, kind).items():
                at = record.opened_at if kind == "disputes" else record.at
                day = record.day if kind == "sales" else local_day(at, self.time_zone).isoformat()
                rows.append(HistoryRow(kind, key, at, day, _is_open(kind, record),
                                       to_plain(record)))
        return rows

    @classmethod
    def from_doc(cls, doc: dict[str, Any], records: Iterable[tuple[str, dict[str, Any]]] = (),
                 *, complete: bool = False,
                 absent: Mapping[str, Iterable[str]] | None = None) -> Account:
        """The account of ``doc`` (from :meth:`to_doc`) with its open records and ``records``
        (``(kind, record)`` pairs the store loaded). Its books answer only for what is loaded
        or named ``absent``, unless ``complete`` (the whole history was loaded). A document of
        the earlier layout, with every record inside, loads complete."""
        hints = _account_hints()
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.init and f.name in doc and f.name not in _KEYED:
                kwargs[f.name] = from_plain(hints[f.name], doc[f.name])
        balances = {s: 0 for s in SubBalance}
        balances.update(kwargs.get("balances_by_sub", {}))
        kwargs["balances_by_sub"] = balances
        embedded = [(kind, item) for kind in _KEYED for item in doc.get(kind) or ()]
        complete = complete or bool(embedded)
        books: dict[str, Any] = {kind: Book(complete=complete) for kind in _KEYED}
        account = cls(**kwargs, **books)
        account.add_records(itertools.chain(doc.get("open") or (), embedded, records), absent)
        return account

    def add_records(self, records: Iterable[tuple[str, dict[str, Any]]],
                    absent: Mapping[str, Iterable[str]] | None = None) -> None:
        """Take in stored records (``(kind, record)`` pairs) and the keys known not to exist."""
        for kind, item in records:
            record_type, key = _KEYED[kind]
            record = from_plain(record_type, item)
            getattr(self, kind)[getattr(record, key)] = record
        for kind, keys in (absent or {}).items():
            getattr(self, kind).absent.update(keys)


@cache
def _account_hints() -> dict[str, Any]:
    return get_type_hints(Account)


# --- card reissue -------------------------------------------------------------------------------


def reissue_card(
    old: Account,
    *,
    reissue_id: str,
    new_contract: str,
    new_card_uid: str,
    now: datetime,
    school_id: str | None = None,
    time_zone: str | None = None,
    grace_meal_limit: int | None = None,
) -> Reissue:
    """Move everything to a new contract and close the old account.

    Every sub-balance (a grace debt included) and every bonus lot (with its own expiry) moves
    through the ``internal:reissue`` clearing account: the old account posts
    ``reissue_out:<id>``, the new one ``reissue_in:<id>``. Parent controls, today's spending
    (so a reissue does not reset the daily limit) and the spending history move too. A pending
    auto top-up is cancelled on the old account, since the payment would name the old contract.
    School settings default to the old school's. Replaying the same reissue returns the stored
    record and no new account.
    """
    at = require_aware(now)
    if old.successor is not None:
        s = old.successor
        if (s.reissue_id, s.new_contract, s.new_card_uid) != (
            reissue_id,
            new_contract,
            new_card_uid,
        ):
            raise _conflict("reissue", reissue_id)
        return Reissue(s, None, replayed=True)
    old._require_open()
    if new_contract == old.contract:
        raise WalletRejected(RejectionReason.SAME_CONTRACT, new_contract)
    moved = old.balances
    record = ReissueRecord(reissue_id, old.contract, new_contract, new_card_uid, moved, at)
    new = Account.open(
        contract=new_contract,
        card_uid=new_card_uid,
        school_id=school_id or old.school_id,
        time_zone=time_zone or old.time_zone,
        now=at,
        grace_meal_limit=old.grace_meal_limit if grace_meal_limit is None else grace_meal_limit,
        predecessor=record,
    )
    legs_out: list[Leg] = [(s, -moved.of(s), CounterAccount.REISSUE) for s in SubBalance]
    legs_in: list[Leg] = [(s, moved.of(s), CounterAccount.REISSUE) for s in SubBalance]
    old._post(OperationKind.REISSUE_OUT, reissue_id, legs_out, at)
    new._post(OperationKind.REISSUE_IN, reissue_id, legs_in, at)
    new.bonus_lots, old.bonus_lots = old.bonus_lots, []
    new.limits = old.limits
    new.blocked_categories = old.blocked_categories
    new.blocked_items = old.blocked_items
    new.allergens = old.allergens
    new.low_balance_threshold = old.low_balance_threshold
    new.low_balance_armed = old.low_balance_armed
    new.auto_top_up = old.auto_top_up
    new.scheduled_top_up = old.scheduled_top_up
    new.transit_payments = old.transit_payments
    new.daily_spend = [dataclasses.replace(d) for d in old.daily_spend]
    _move_rides(old, new, at)
    old._withdraw_planned_payments(at)
    if new.scheduled_top_up is not None:
        new.scheduled_top_up = dataclasses.replace(new.scheduled_top_up, asked=())
    old.status = AccountStatus.CLOSED
    old.closed_at = at
    old.successor = record
    old._events.append(CardReissued(old.contract, new_contract, reissue_id, moved, at))
    old._touch()
    return Reissue(record, new)


def _move_rides(old: Account, new: Account, at: datetime) -> None:
    """The fares still owed move to the new contract (never written off: its top-ups collect
    them), and so do the rides transit may still correct (paid and not fully refunded, from
    the last ``RIDES_MOVED_ON_REISSUE_DAYS``), so their refunds land where the money went."""
    since = at - timedelta(days=RIDES_MOVED_ON_REISSUE_DAYS)
    for ride in old.rides.values():
        correctable = ride.charged and ride.paid > ride.refunded and ride.at >= since
        if not (ride.owed or correctable):
            continue
        new.rides[ride.ride_id] = dataclasses.replace(ride, inherited_from=old.contract,
                                                      seq=new.version)
        ride.moved_to = new.contract
    new.fares_unpaid = any(r.owed for r in new.rides.values())
    old.fares_unpaid = False


# --- ledger check -------------------------------------------------------------------------------


def check_ledger(account: Account, entries: Iterable[LedgerEntry]) -> list[str]:
    """Everything wrong between an account and its ledger entries; empty when consistent.

    Checks: each balance equals the sum of the account's entries; every operation among the
    entries is balanced; the bonus balance equals the points left in the bonus lots.
    """
    entries = list(entries)
    problems: list[str] = []
    derived = ledger_balances(entries, account.contract)
    if derived != account.balances:
        problems.append(f"balances {account.balances} != ledger {derived}")
    for (kind, operation_id), residue in unbalanced_operations(entries).items():
        problems.append(f"operation {kind}:{operation_id} is off by {residue}")
    lots = sum(lot.remaining for lot in account.bonus_lots)
    if lots != account.balances.bonus:
        problems.append(f"bonus lots hold {lots}, bonus balance is {account.balances.bonus}")
    return problems
