"""Gate taps: validate, decide allow/deny with a reason, record the decision once per tap id.

Order of checks (the first failing one is the reason): unknown_card, card_blocked, other_school
(the card's identity, identical to the allow-list cache), then no_schedule, then for entries
only outside_schedule and anti_passback.

Exits are never denied for the schedule or for anti-passback: a child must always be able to
leave the building (fire safety beats fraud control), and an exit without a recorded entry is far
more often a missed tap or a guard-admitted child than a trick. Such an exit is allowed, recorded,
and flagged (``StudentExited.without_entry``, ``AttendanceDay.exits_without_entry``); it does not
make the student present. Anti-passback denies a second entry while the student is inside on the
same local day; a new local day starts outside, so a forgotten exit yesterday blocks nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from .attendance import AttendanceDay, Passage, PassageSource, day_key, student_of
from .cards import CardRecord, identity_verdict
from .common import (
    Direction,
    Doc,
    IdempotencyConflict,
    TapReason,
    check_event_time,
    date_from_doc,
    date_to_doc,
    dt_from_doc,
    require_aware,
    require_text,
)
from .events import DomainEvent, TapDecided
from .schedule import SchoolSchedule

TAP_MAX_SKEW = timedelta(minutes=2)
TAP_MAX_AGE = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class GateTap:
    """A turnstile reading; ``tap_id`` is the controller's idempotency key."""

    tap_id: str
    gate_id: str
    school_id: str
    card_uid: str
    direction: Direction
    tapped_at: datetime


def validate_tap(
    tap: GateTap,
    now: datetime,
    *,
    max_skew: timedelta = TAP_MAX_SKEW,
    max_age: timedelta = TAP_MAX_AGE,
) -> datetime:
    """Reject a tap that cannot be decided (raises :class:`InvalidInput`); return its UTC time.

    Empty ids, a naive time, a time more than ``max_skew`` in the future or older than
    ``max_age`` are permanent faults: the handler sends the tap to the dead-letter topic.
    """
    require_text(tap.tap_id, "tap_id")
    require_text(tap.gate_id, "gate_id")
    require_text(tap.school_id, "school_id")
    require_text(tap.card_uid, "card_uid")
    return check_event_time(
        tap.tapped_at, now, max_skew=max_skew, max_age=max_age, field="tapped_at"
    )


@dataclass(frozen=True, slots=True)
class TapRecord:
    """The recorded decision for one tap id (one document per tap; the idempotency record)."""

    tap_id: str
    gate_id: str
    school_id: str
    card_uid: str
    direction: Direction
    tapped_at: datetime
    allowed: bool
    reason: TapReason
    contract: str | None
    day: date | None
    decided_at: datetime

    def matches(self, tap: GateTap) -> bool:
        return (
            self.tap_id == tap.tap_id
            and self.gate_id == tap.gate_id
            and self.school_id == tap.school_id
            and self.card_uid == tap.card_uid
            and self.direction is tap.direction
            and self.tapped_at == tap.tapped_at
        )

    def decided_event(self) -> TapDecided:
        """The gate's answer, rebuilt identically from the record (for a replayed tap)."""
        return TapDecided(
            self.tap_id, self.gate_id, self.school_id, self.card_uid, self.direction,
            self.tapped_at, self.allowed, self.reason, self.contract, self.day,
            self.decided_at,
        )

    def to_doc(self) -> Doc:
        return {
            "tap_id": self.tap_id,
            "gate_id": self.gate_id,
            "school_id": self.school_id,
            "card_uid": self.card_uid,
            "direction": self.direction.value,
            "tapped_at": self.tapped_at,
            "allowed": self.allowed,
            "reason": self.reason.value,
            "contract": self.contract,
            "day": None if self.day is None else date_to_doc(self.day),
            "decided_at": self.decided_at,
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> TapRecord:
        day = doc.get("day")
        return cls(
            tap_id=str(doc["tap_id"]),
            gate_id=str(doc["gate_id"]),
            school_id=str(doc["school_id"]),
            card_uid=str(doc["card_uid"]),
            direction=Direction(doc["direction"]),
            tapped_at=dt_from_doc(doc["tapped_at"]),
            allowed=bool(doc["allowed"]),
            reason=TapReason(doc["reason"]),
            contract=doc.get("contract"),
            day=None if day is None else date_from_doc(day),
            decided_at=dt_from_doc(doc["decided_at"]),
        )


@dataclass(frozen=True, slots=True)
class TapOutcome:
    """``record`` is the decision; ``day`` the attendance record to persist (None if untouched).

    On a replay ``events`` is empty and ``replayed`` is True; the answer to send the gate again,
    if wanted, is ``record.decided_event()``.
    """

    record: TapRecord
    day: AttendanceDay | None
    events: tuple[DomainEvent, ...]
    replayed: bool = False


def day_key_for_tap(
    tap: GateTap, card: CardRecord | None, schedule: SchoolSchedule | None
) -> str | None:
    """Which attendance record the handler must load before :func:`decide_tap` (None: none)."""
    if card is None or card.contract is None or schedule is None:
        return None
    return day_key(card.contract, schedule.school_day(tap.tapped_at))


def decide_tap(
    tap: GateTap,
    *,
    card: CardRecord | None,
    schedule: SchoolSchedule | None,
    day: AttendanceDay | None,
    previous: TapRecord | None,
    now: datetime,
) -> TapOutcome:
    """Decide one tap.

    ``card`` is the projection of ``tap.card_uid``, ``schedule`` the schedule of the gate's school,
    ``day`` the record named by :func:`day_key_for_tap` if it exists, ``previous`` the stored
    record of this tap id. A tap id already decided returns that decision and changes nothing,
    even if the tap is by now older than the validation window; the same id with other data
    raises :class:`IdempotencyConflict`. An allowed tap is recorded on the day record.
    """
    if previous is not None:
        if not previous.matches(tap):
            raise IdempotencyConflict(tap.tap_id, "tap id reused with other data")
        return TapOutcome(previous, None, (), replayed=True)
    at = validate_tap(tap, now)
    reason = identity_verdict(card, tap.school_id)
    student = None if card is None else student_of(card)
    local_day: date | None = None
    if reason is TapReason.OK and (schedule is None or schedule.school_id != tap.school_id):
        reason = TapReason.NO_SCHEDULE
    if reason is TapReason.OK and schedule is not None and student is not None:
        local_day = schedule.school_day(at)
        if day is not None and (day.contract != student.contract or day.day != local_day):
            raise ValueError("the loaded day record is not the card's record for the tap's day")
        if tap.direction is Direction.IN:
            if not schedule.is_open(at):
                reason = TapReason.OUTSIDE_SCHEDULE
            elif day is not None and day.inside_at(at):
                reason = TapReason.ANTI_PASSBACK
    allowed = reason is TapReason.OK
    caused: list[DomainEvent] = []
    touched: AttendanceDay | None = None
    if allowed and schedule is not None and student is not None and local_day is not None:
        touched = day if day is not None else AttendanceDay.open(student, local_day)
        passage = Passage(tap.tap_id, tap.direction, at, PassageSource.TAP, gate_id=tap.gate_id)
        caused = touched.record(passage, schedule)
    record = TapRecord(
        tap_id=tap.tap_id,
        gate_id=tap.gate_id,
        school_id=tap.school_id,
        card_uid=tap.card_uid,
        direction=tap.direction,
        tapped_at=at,
        allowed=allowed,
        reason=reason,
        contract=None if student is None else student.contract,
        day=local_day,
        decided_at=require_aware(now, "now"),
    )
    return TapOutcome(record, touched, (record.decided_event(), *caused))
