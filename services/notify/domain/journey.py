"""Journey to school: one timeline per child per local day, and the two messages it causes.

The day is the school's local day (``time_zone``). Events may arrive late and out of order
(offline validators): the timeline is kept ordered by event time, each source event is recorded
once, and the "arrived safely" message and the "did not arrive" alert are each raised at most
once per day, with deterministic event ids so routing dedupes them on redelivery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from .clock import (
    format_hhmm,
    from_doc_datetime,
    local_datetime,
    opt_from_doc_datetime,
    parse_hhmm,
    require_aware,
    zone,
)
from .errors import NotifyError, NotifyRejection
from .facts import ArrivedSafelyFacts, NotArrivedFacts, NotificationEvent
from .kinds import NotificationKind

DEFAULT_GRACE = timedelta(minutes=15)
MORNING_FROM = time(5, 0)


class TimelineKind(StrEnum):
    RIDE = "ride"
    ENTRY = "entry"
    EXIT = "exit"
    PURCHASE = "purchase"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One step of the day. ``place`` is the route for a ride, the school for a gate, the
    canteen for a purchase; ``amount`` is the fare or the purchase total in kopecks."""

    event_id: str
    kind: TimelineKind
    at: datetime
    place: str | None = None
    amount: int | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", require_aware(self.at, "timeline entry"))

    def to_doc(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "kind": self.kind.value,
            "at": self.at,
            "place": self.place,
            "amount": self.amount,
            "detail": self.detail,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TimelineEntry:
        return cls(doc["event_id"], TimelineKind(doc["kind"]), from_doc_datetime(doc["at"]),
                   doc["place"], doc["amount"], doc["detail"])


@dataclass(frozen=True, slots=True)
class ChildArrivedSafely:
    event_id: str
    contract: str
    day: date
    at: datetime
    school: str | None
    ride_at: datetime | None
    ride_route: str | None


@dataclass(frozen=True, slots=True)
class NotArrivedAlertRaised:
    event_id: str
    contract: str
    day: date
    raised_at: datetime
    last_ride_at: datetime
    route: str | None
    lesson_start: datetime
    school: str | None


JourneyEvent = ChildArrivedSafely | NotArrivedAlertRaised


def journey_day_of(at: datetime, time_zone: str) -> date:
    return require_aware(at).astimezone(zone(time_zone)).date()


def journey_key(contract: str, day: date) -> str:
    return f"{contract}:{day.isoformat()}"


@dataclass(slots=True)
class JourneyDay:
    """A child's day. ``lesson_start`` is None on a day without lessons: no alert then."""

    contract: str
    day: date
    time_zone: str
    lesson_start: time | None = None
    grace: timedelta = DEFAULT_GRACE
    school: str | None = None
    entries: list[TimelineEntry] = field(default_factory=list)
    arrived_at: datetime | None = None
    alerted_at: datetime | None = None
    missing_at_start: bool = False  # access said: no entry when the first lesson began
    version: int = 0

    @classmethod
    def open(
        cls,
        contract: str,
        at: datetime,
        time_zone: str,
        *,
        lesson_start: time | None = None,
        grace: timedelta = DEFAULT_GRACE,
        school: str | None = None,
    ) -> JourneyDay:
        """The (empty) day that contains the instant ``at`` in the school's time zone."""
        return cls(contract, journey_day_of(at, time_zone), time_zone, lesson_start, grace, school)

    @property
    def key(self) -> str:
        return journey_key(self.contract, self.day)

    @property
    def timeline(self) -> list[TimelineEntry]:
        return list(self.entries)

    @property
    def school_id(self) -> str | None:
        """The school the child was expected at or seen at that day (its gates)."""
        return self.school or next((e.place for e in self.entries
                                    if e.kind in (TimelineKind.ENTRY, TimelineKind.EXIT)), None)

    def _local_time(self, at: datetime) -> time:
        return at.astimezone(zone(self.time_zone)).time()

    def lesson_start_at(self) -> datetime | None:
        if self.lesson_start is None:
            return None
        return local_datetime(self.day, self.lesson_start, zone(self.time_zone))

    def _morning_rides(self, before: datetime | None = None) -> list[TimelineEntry]:
        limit = self.lesson_start or time(23, 59, 59)
        return [
            e for e in self.entries
            if e.kind is TimelineKind.RIDE
            and MORNING_FROM <= self._local_time(e.at) < limit
            and (before is None or e.at <= before)
        ]

    def record(self, entry: TimelineEntry) -> list[JourneyEvent]:
        """Add a step to the timeline, in time order; the first entry raises "arrived safely".

        The same source event twice is a no-op; the same event id with different content is
        ``event_conflict``; an event of another local day is ``wrong_day``.
        """
        for known in self.entries:
            if known.event_id == entry.event_id:
                if known == entry:
                    return []
                raise NotifyError(NotifyRejection.EVENT_CONFLICT, entry.event_id)
        if journey_day_of(entry.at, self.time_zone) != self.day:
            raise NotifyError(NotifyRejection.WRONG_DAY, entry.event_id)
        self.entries.append(entry)
        self.entries.sort(key=lambda e: (e.at, e.event_id))
        self.version += 1
        if entry.kind is TimelineKind.RIDE and self.missing_at_start:
            # an offline validator's morning ride uploaded after access's news
            start = self.lesson_start_at()
            alert = None if start is None else self.check_not_arrived(start)
            return [alert] if alert is not None else []
        if entry.kind is TimelineKind.ENTRY and self.arrived_at is None:
            self.arrived_at = entry.at
            rides = self._morning_rides(before=entry.at)
            ride = rides[-1] if rides else None
            return [
                ChildArrivedSafely(
                    event_id=f"journey:{self.key}:arrived_safely",
                    contract=self.contract,
                    day=self.day,
                    at=entry.at,
                    school=entry.place or self.school,
                    ride_at=ride.at if ride else None,
                    ride_route=ride.place if ride else None,
                )
            ]
        return []

    def check_not_arrived(self, now: datetime) -> NotArrivedAlertRaised | None:
        """Evaluated by a periodic tick: alert once if the child rode in the morning but has no
        entry by lesson start + grace. A tick on a later day raises nothing (the news is stale);
        an entry recorded at any time (even late-uploaded) means the child is in school."""
        now = require_aware(now)
        start = self.lesson_start_at()
        if start is None or self.alerted_at is not None:
            return None
        if now < start + self.grace or journey_day_of(now, self.time_zone) != self.day:
            return None
        if any(e.kind is TimelineKind.ENTRY for e in self.entries):
            return None
        rides = self._morning_rides()
        if not rides:
            return None
        ride = rides[-1]
        self.alerted_at = now
        self.version += 1
        return NotArrivedAlertRaised(
            event_id=f"journey:{self.key}:not_arrived",
            contract=self.contract,
            day=self.day,
            raised_at=now,
            last_ride_at=ride.at,
            route=ride.place,
            lesson_start=start,
            school=self.school,
        )

    def lessons_began_without_entry(
        self, lesson_start: time, school: str | None = None
    ) -> NotArrivedAlertRaised | None:
        """Access found no entry when the first lesson began. Judged as of that moment, so a
        day replayed or delivered late still alerts, unless an entry is known by now (the
        child is in school) or the alert was raised already; no morning ride, no alert (but
        the day remembers the news: a morning ride uploaded later raises it, see ``record``)."""
        if (self.lesson_start, self.grace, self.missing_at_start) != (
                lesson_start, timedelta(0), True):
            self.lesson_start, self.grace = lesson_start, timedelta(0)
            self.missing_at_start = True
            self.version += 1
        self.school = self.school or school
        start = self.lesson_start_at()
        return None if start is None else self.check_not_arrived(start)

    def to_doc(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "contract": self.contract,
            "day": self.day.isoformat(),
            "time_zone": self.time_zone,
            "lesson_start": None if self.lesson_start is None else format_hhmm(self.lesson_start),
            "grace_seconds": int(self.grace.total_seconds()),
            "school": self.school,
            "entries": [e.to_doc() for e in self.entries],
            "arrived_at": self.arrived_at,
            "alerted_at": self.alerted_at,
            "missing_at_start": self.missing_at_start,
            "version": self.version,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> JourneyDay:
        return cls(
            contract=doc["contract"],
            day=date.fromisoformat(doc["day"]),
            time_zone=doc["time_zone"],
            lesson_start=None if doc["lesson_start"] is None else parse_hhmm(doc["lesson_start"]),
            grace=timedelta(seconds=doc["grace_seconds"]),
            school=doc["school"],
            entries=[TimelineEntry.from_doc(e) for e in doc["entries"]],
            arrived_at=opt_from_doc_datetime(doc["arrived_at"]),
            alerted_at=opt_from_doc_datetime(doc["alerted_at"]),
            missing_at_start=bool(doc.get("missing_at_start", False)),
            version=doc["version"],
        )


def entry_notification(
    journey: JourneyDay, entry_event_id: str, gate: NotificationEvent
) -> NotificationEvent:
    """The one notification a turnstile entry makes: "arrived safely" (with the morning ride)
    when it is the day's first entry, the plain entry notice otherwise.

    Derived from the stored day, not from what :meth:`JourneyDay.record` just returned, so a
    redelivered first entry maps onto the same "arrived safely" event (and dedupe key) again.
    """
    first = next((e for e in journey.entries if e.kind is TimelineKind.ENTRY), None)
    if first is None or first.event_id != entry_event_id:
        return gate
    rides = journey._morning_rides(before=first.at)
    ride = rides[-1] if rides else None
    return notification_for(ChildArrivedSafely(
        event_id=f"journey:{journey.key}:arrived_safely", contract=journey.contract,
        day=journey.day, at=first.at, school=first.place or journey.school,
        ride_at=ride.at if ride else None, ride_route=ride.place if ride else None))


def notification_for(event: JourneyEvent) -> NotificationEvent:
    """The notification a journey event becomes, routed like any other child event."""
    if isinstance(event, ChildArrivedSafely):
        return NotificationEvent(
            event_id=event.event_id,
            kind=NotificationKind.ARRIVED_SAFELY,
            occurred_at=event.at,
            facts=ArrivedSafelyFacts(event.at, event.school, event.ride_at, event.ride_route),
            contract=event.contract,
        )
    return NotificationEvent(
        event_id=event.event_id,
        kind=NotificationKind.NOT_ARRIVED_ALERT,
        occurred_at=event.raised_at,
        facts=NotArrivedFacts(event.last_ride_at, event.lesson_start, event.route, event.school),
        contract=event.contract,
    )
