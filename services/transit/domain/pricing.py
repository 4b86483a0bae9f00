"""Pricing: a pure function of a card's taps, week by week, in tap (event) time order.

Rules, in the order they are applied to each ride (taps sorted by tap time, then tap id):

1. The base fare is the concession fare of the ride's mode if the card's concession covers the
   ride's *local* date, else the full fare; the rules version is the one in force that local day.
2. A ride is a free transfer when it starts within the transfer window (inclusive) of the ride
   that started the current journey, the journey has transfers left, and (unless the rules allow
   it) it is a different route. Otherwise the ride starts a new journey. Capping changes what a
   ride costs, not whether it starts a journey, so the two rules stay independent.
3. What the card pays for a journey-starting ride is the base fare limited by what is left under
   the daily cap (local calendar day) and under the weekly cap (Monday 00:00 to Monday 00:00
   local). Transfers are free and so never count towards a cap.

Weeks are priced independently and a journey never continues across the week boundary, so a
late tap can only ever reprice its own week.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from services.transit.domain.rules import FareRulebook, Mode


class Explanation(StrEnum):
    """Why a ride costs what it costs; shown on the parents' statement."""

    FULL_FARE = "full_fare"
    CONCESSION = "concession"
    TRANSFER_FREE = "transfer_free"
    CAPPED = "capped"
    PARTIALLY_CAPPED = "partially_capped"
    CORRECTED_LATE_UPLOAD = "corrected_late_upload"


class CapKind(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


def as_utc(instant: datetime) -> datetime:
    """Normalise an aware instant to UTC; a naive one (as PyMongo returns by default) is UTC."""
    if instant.tzinfo is None:
        return instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


@dataclass(frozen=True)
class Tap:
    """One validator tap. ``tapped_at`` is the validator's clock (event time), kept in UTC."""

    tap_id: str
    validator_id: str
    vehicle_id: str
    route: str
    mode: Mode
    stop: str
    card_uid: str
    tapped_at: datetime
    offline: bool = False

    def __post_init__(self) -> None:
        if self.tapped_at.tzinfo is None or self.tapped_at.utcoffset() is None:
            raise ValueError("tapped_at must be timezone-aware")
        for name in ("tap_id", "validator_id", "vehicle_id", "route", "stop", "card_uid"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        object.__setattr__(self, "mode", Mode(self.mode))
        object.__setattr__(self, "tapped_at", as_utc(self.tapped_at))

    @property
    def order_key(self) -> tuple[datetime, str]:
        return (self.tapped_at, self.tap_id)

    def to_doc(self) -> dict[str, Any]:
        return {
            "tap_id": self.tap_id,
            "validator_id": self.validator_id,
            "vehicle_id": self.vehicle_id,
            "route": self.route,
            "mode": self.mode.value,
            "stop": self.stop,
            "card_uid": self.card_uid,
            "tapped_at": self.tapped_at,
            "offline": self.offline,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Tap:
        return cls(
            tap_id=doc["tap_id"],
            validator_id=doc["validator_id"],
            vehicle_id=doc["vehicle_id"],
            route=doc["route"],
            mode=Mode(doc["mode"]),
            stop=doc["stop"],
            card_uid=doc["card_uid"],
            tapped_at=as_utc(doc["tapped_at"]),
            offline=bool(doc["offline"]),
        )


@dataclass(frozen=True)
class ConcessionEligibility:
    """A student concession valid on local dates ``valid_from``..``valid_until`` inclusive."""

    valid_until: date
    valid_from: date | None = None

    def covers(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and day <= self.valid_until

    def to_doc(self) -> dict[str, Any]:
        return {
            "valid_until": self.valid_until.isoformat(),
            "valid_from": None if self.valid_from is None else self.valid_from.isoformat(),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ConcessionEligibility:
        start = doc.get("valid_from")
        return cls(
            valid_until=date.fromisoformat(doc["valid_until"]),
            valid_from=None if start is None else date.fromisoformat(start),
        )


def concession_reminder_due(
    eligibility: ConcessionEligibility | None,
    today: date,
    days_before: int,
    already_reminded_for: date | None = None,
) -> bool:
    """Whether the "your concession expires soon" reminder is due on local date ``today``.

    Due from ``days_before`` days before ``valid_until`` up to and including that day, once per
    expiry date: a renewal (a new ``valid_until``) re-arms it.
    """
    if eligibility is None or already_reminded_for == eligibility.valid_until:
        return False
    first_day = eligibility.valid_until - timedelta(days=days_before)
    return first_day <= today <= eligibility.valid_until


@dataclass(frozen=True)
class PricedRide:
    """The price of one tap. ``base_fare`` is the tariff before transfers and caps;
    ``journey_start`` is the tap id of the ride that started this ride's journey."""

    tap: Tap
    fare: int
    base_fare: int
    explanation: Explanation
    cap: CapKind | None
    local_day: date
    week: date
    rules_version: str
    journey_start: str


class UnpriceableTap(ValueError):
    """No rules cover the tap's date, or its mode is not served; carries a reason code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def price_taps(
    taps: Iterable[Tap],
    rulebook: FareRulebook,
    concession: ConcessionEligibility | None,
) -> list[PricedRide]:
    """Price any set of taps of one card; returns rides in tap order (tap time, then tap id)."""
    weeks: dict[date, list[Tap]] = defaultdict(list)
    for tap in taps:
        weeks[rulebook.week_of(tap.tapped_at)].append(tap)
    priced: list[PricedRide] = []
    for week in sorted(weeks):
        priced.extend(_price_week(week, weeks[week], rulebook, concession))
    return priced


@dataclass
class _Journey:
    start: Tap
    window: timedelta
    max_transfers: int | None
    same_route: bool
    transfers: int = 0

    def admits(self, tap: Tap) -> bool:
        if tap.tapped_at - self.start.tapped_at > self.window:
            return False
        if self.max_transfers is not None and self.transfers >= self.max_transfers:
            return False
        return self.same_route or tap.route != self.start.route


def _price_week(
    week: date,
    taps: list[Tap],
    rulebook: FareRulebook,
    concession: ConcessionEligibility | None,
) -> list[PricedRide]:
    spent_by_day: dict[date, int] = defaultdict(int)
    spent_in_week = 0
    journey: _Journey | None = None
    rides: list[PricedRide] = []
    for tap in sorted(taps, key=lambda t: t.order_key):
        day = rulebook.local_day(tap.tapped_at)
        rules = rulebook.version_on(day)
        if rules is None:
            raise UnpriceableTap("no_rules_in_force", f"no fare rules in force on {day}")
        mode_fare = rules.fare_for(tap.mode)
        if mode_fare is None:
            raise UnpriceableTap(
                "mode_not_served", f"rules {rules.version} have no fare for {tap.mode.value}"
            )
        concession_applies = concession is not None and concession.covers(day)
        base = mode_fare.concession if concession_applies else mode_fare.full
        tariff = Explanation.CONCESSION if concession_applies else Explanation.FULL_FARE

        if journey is not None and journey.admits(tap):
            journey.transfers += 1
            rides.append(
                PricedRide(tap, 0, base, Explanation.TRANSFER_FREE, None, day, week,
                           rules.version, journey.start.tap_id)
            )
            continue

        journey = _Journey(tap, rules.transfer_window, rules.max_transfers,
                           rules.same_route_transfer)
        fare, explanation, cap = base, tariff, None
        rooms: list[tuple[int, CapKind]] = []
        if rules.daily_cap is not None:
            rooms.append((max(0, rules.daily_cap - spent_by_day[day]), CapKind.DAILY))
        if rules.weekly_cap is not None:
            rooms.append((max(0, rules.weekly_cap - spent_in_week), CapKind.WEEKLY))
        if rooms:
            # min() keeps the first of equal rooms, so a tie is reported as the daily cap.
            room, kind = min(rooms, key=lambda r: r[0])
            if room < base:
                fare, cap = room, kind
                explanation = Explanation.CAPPED if room == 0 else Explanation.PARTIALLY_CAPPED
        spent_by_day[day] += fare
        spent_in_week += fare
        rides.append(
            PricedRide(tap, fare, base, explanation, cap, day, week, rules.version, tap.tap_id)
        )
    return rides
