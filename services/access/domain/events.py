"""Domain events of the access service (past tense, frozen); the wire mapping lives elsewhere.

Instants are timezone-aware UTC; ``day`` is the school's local calendar day; local times of day
(``lesson_start``) are in the school's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

from .common import Direction, TapReason


@dataclass(frozen=True, slots=True)
class TapDecided:
    """The decision for one gate tap, published back to the gate (keyed by gate id)."""

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
    decided_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StudentEntered:
    """A student passed in, by a card tap (``source="tap"``) or by a guard (``"manual"``)."""

    passage_id: str
    contract: str
    school_id: str
    class_name: str
    day: date
    at: datetime
    source: str
    gate_id: str | None


@dataclass(frozen=True, slots=True)
class StudentExited:
    """A student passed out; ``without_entry`` when no entry was recorded before it that day."""

    passage_id: str
    contract: str
    school_id: str
    class_name: str
    day: date
    at: datetime
    gate_id: str | None
    without_entry: bool


@dataclass(frozen=True, slots=True)
class ManualEntryRecorded:
    """A guard let a student in without a card tap (forgotten card); the audit record."""

    entry_id: str
    contract: str
    school_id: str
    class_name: str
    day: date
    at: datetime
    guard_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class StudentLate:
    """The first entry of the day came after the first lesson start; at most once per day."""

    contract: str
    school_id: str
    class_name: str
    day: date
    first_arrival: datetime
    lesson_start: time
    minutes_late: int


@dataclass(frozen=True, slots=True)
class StudentNotInAtLessonStart:
    """No entry when the first lesson began (the student may still come: late, or not at
    all); at most once per day. notify joins it with the morning rides."""

    contract: str
    school_id: str
    class_name: str
    day: date
    lesson_start_at: datetime


@dataclass(frozen=True, slots=True)
class StudentAbsent:
    """No entry by the absence cut-off of a school day; at most once per day."""

    contract: str
    school_id: str
    class_name: str
    day: date
    cutoff_at: datetime


@dataclass(frozen=True, slots=True)
class AttendanceDayClosed:
    """The student's day is complete: ``closed_by`` is ``"last_exit"`` or ``"end_of_day"``."""

    contract: str
    school_id: str
    class_name: str
    day: date
    first_arrival: datetime | None
    last_exit: datetime | None
    late: bool
    closed_by: str


@dataclass(frozen=True, slots=True)
class AllowListEntryChanged:
    """The gate cache entry for a card changed (the compacted allow-list topic, keyed by card)."""

    card_uid: str
    school_id: str | None
    allowed: bool
    reason: TapReason


@dataclass(frozen=True, slots=True)
class SchoolScheduleSet:
    """A school admin replaced the school's schedule data."""

    command_id: str
    school_id: str
    version: int
    timezone: str


DomainEvent = (
    TapDecided
    | StudentEntered
    | StudentExited
    | ManualEntryRecorded
    | StudentLate
    | StudentNotInAtLessonStart
    | StudentAbsent
    | AttendanceDayClosed
    | AllowListEntryChanged
    | SchoolScheduleSet
)
