"""Autopay by date (PSK's «автоплатёж по дате»): a set amount on chosen days of the month.

Beside the threshold auto top-up, the parent plans a payment by the calendar (1 500 ₽ on the
1st and the 15th). On a due date wallet asks the payment integrator exactly as the threshold
auto top-up does (``AutoTopUpRequested``, reason ``schedule``), under the request id
``sched-<contract>-<YYYY-MM-DD>``: one request per child and due date, whoever asks.

The schedule remembers the last school-local day it has covered (``covered_through``): a due
date is asked only when it is after that day and not after today, and asking moves the day to
today, so a due date is asked at most once (the account's optimistic version settles a race
between two instances). A due date that fell while the service was down is asked when it comes
back, if it is at most ``catch_up_days`` old; after a longer outage only the latest missed date
is considered and, if older than that, nothing is asked (a parent is not charged for a half
month gone, nor several times at once). Setting or resuming a schedule covers the days before
it: the first due date asked is today's at the earliest.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from services.wallet.domain.values import (
    RejectionReason,
    SubBalance,
    WalletRejected,
    require_amount,
    require_money_sub_balance,
    zone,
)

MAX_DAYS_PER_MONTH = 4
MAX_ASKED_KEPT = 6  # recent requests kept to answer their payment or failure
SCHEDULE_PREFIX = "sched-"


class ScheduleAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    REMOVE = "remove"


class AskState(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ScheduledAsk:
    """One due date asked of the payment integrator."""

    request_id: str
    due_date: str  # ISO YYYY-MM-DD, school-local
    amount: int
    state: AskState = AskState.PENDING


@dataclass(frozen=True, slots=True)
class ScheduledTopUp:
    """The plan: ``amount`` kopecks to ``sub_balance`` on each of ``days`` (1-31; a day the
    month lacks means its last day)."""

    days: tuple[int, ...]
    amount: int
    sub_balance: SubBalance
    covered_through: str  # ISO date: every due date up to this school-local day is settled
    paused: bool = False
    asked: tuple[ScheduledAsk, ...] = ()

    @classmethod
    def plan(cls, days: tuple[int, ...] | list[int], amount: int, sub_balance: SubBalance, *,
             today: date, previous: ScheduledTopUp | None) -> ScheduledTopUp:
        """A new or changed plan from ``today`` on (``invalid_setting``: no days, more than
        four, a day outside 1-31). The days a previous plan covered stay covered: a due date
        already asked is never asked again under a changed plan."""
        unique = tuple(sorted(set(days)))
        if not unique or len(unique) > MAX_DAYS_PER_MONTH or not all(1 <= d <= 31 for d in unique):
            raise WalletRejected(RejectionReason.INVALID_SETTING, "days of the month: 1 to "
                                 f"{MAX_DAYS_PER_MONTH} days between 1 and 31")
        covered = _later((today - timedelta(days=1)).isoformat(),
                         previous.covered_through if previous else None)
        return cls(unique, require_amount(amount), require_money_sub_balance(sub_balance),
                   covered, previous.paused if previous else False,
                   previous.asked if previous else ())

    def switched(self, action: ScheduleAction, *, today: date) -> ScheduledTopUp | None:
        """Paused, resumed (due dates from today on; those that fell while paused are not
        asked) or removed (None)."""
        match action:
            case ScheduleAction.PAUSE:
                return replace(self, paused=True)
            case ScheduleAction.RESUME:
                if not self.paused:
                    return self
                return replace(self, paused=False, covered_through=_later(
                    (today - timedelta(days=1)).isoformat(), self.covered_through))
            case ScheduleAction.REMOVE:
                return None
        raise AssertionError(action)

    def due_dates(self, through: date) -> list[date]:
        """The due dates after ``covered_through`` up to ``through``, oldest first."""
        start = date.fromisoformat(self.covered_through) + timedelta(days=1)
        found: list[date] = []
        year, month = start.year, start.month
        while date(year, month, 1) <= through:
            last = calendar.monthrange(year, month)[1]
            for day in sorted({min(d, last) for d in self.days}):
                due = date(year, month, day)
                if start <= due <= through:
                    found.append(due)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return found

    def next_due(self) -> date | None:
        """The first due date still to ask (None while paused)."""
        if self.paused:
            return None
        start = date.fromisoformat(self.covered_through) + timedelta(days=1)
        dates = self.due_dates(start + timedelta(days=62))
        return dates[0] if dates else None

    def ask(self, contract: str, *, today: date,
            catch_up_days: int) -> tuple[ScheduledTopUp, ScheduledAsk | None]:
        """Settle every due date up to ``today``; the latest one is asked when it is at most
        ``catch_up_days`` old (see the module's note on outages)."""
        if self.paused:
            return self, None
        dates = self.due_dates(today)
        if not dates:
            return self, None
        settled = replace(self, covered_through=today.isoformat())
        latest = dates[-1]
        if (today - latest).days > catch_up_days:
            return settled, None
        asked = ScheduledAsk(request_id(contract, latest), latest.isoformat(), self.amount)
        return replace(settled, asked=(*self.asked, asked)[-MAX_ASKED_KEPT:]), asked

    def answered(self, request: str, state: AskState) -> tuple[ScheduledTopUp, ScheduledAsk | None]:
        """Mark the pending request ``request`` paid or failed; None when it is not a pending
        request of this plan (a repeated answer changes nothing)."""
        for i, asked in enumerate(self.asked):
            if asked.request_id == request and asked.state is AskState.PENDING:
                changed = replace(asked, state=state)
                return replace(self, asked=(*self.asked[:i], changed, *self.asked[i + 1:])), asked
        return self, None


    def withdrawn(self) -> tuple[ScheduledTopUp, tuple[ScheduledAsk, ...]]:
        """Forget the requests still pending (the account closes or moves): they are to be
        withdrawn from the integrator."""
        pending = tuple(a for a in self.asked if a.state is AskState.PENDING)
        return replace(self, asked=tuple(a for a in self.asked if a not in pending)), pending


def request_id(contract: str, due: date) -> str:
    """The one request id of a child's due date."""
    return f"{SCHEDULE_PREFIX}{contract}-{due.isoformat()}"


def local_midnight(day: date, time_zone: str) -> datetime:
    """The instant the school-local ``day`` begins (when its due date becomes due)."""
    return datetime.combine(day, time.min, tzinfo=zone(time_zone))


def _later(a: str, b: str | None) -> str:
    return a if b is None or a > b else b
