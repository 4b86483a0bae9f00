"""Attendance: one record per student per local school day, with every entry and exit.

The day record is also where the per-day markers live that make "late", "absent" and "day
closed" events happen at most once, and where anti-passback reads whether the student is
inside. Passages are kept sorted by time, so a late-delivered passage lands in its place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from .cards import CardRecord, CardStatus
from .common import (
    Direction,
    Doc,
    IdempotencyConflict,
    ManualEntryRejected,
    ValidationReason,
    check_event_time,
    date_from_doc,
    date_to_doc,
    dt_from_doc,
    opt_dt_from_doc,
    require_aware,
    require_text,
)
from .events import (
    AttendanceDayClosed,
    DomainEvent,
    ManualEntryRecorded,
    StudentAbsent,
    StudentEntered,
    StudentExited,
    StudentLate,
    StudentNotInAtLessonStart,
)
from .schedule import SchoolSchedule

MANUAL_MAX_SKEW = timedelta(minutes=2)
MANUAL_MAX_AGE = timedelta(days=7)


class PassageSource(StrEnum):
    TAP = "tap"
    MANUAL = "manual"


class ClosedBy(StrEnum):
    LAST_EXIT = "last_exit"
    END_OF_DAY = "end_of_day"


@dataclass(frozen=True, slots=True)
class Student:
    """A student as attendance sees them: the contract is the id (no names in this service)."""

    contract: str
    school_id: str
    class_name: str


def student_of(card: CardRecord) -> Student | None:
    """The student behind a card; None while the card was never seen issued."""
    if card.status is CardStatus.UNKNOWN or card.contract is None or card.school_id is None:
        return None
    return Student(card.contract, card.school_id, card.class_name or "")


def day_key(contract: str, day: date) -> str:
    """Natural id of a day record, e.g. ``"12345678:2025-09-01"`` (the store's unique key)."""
    return f"{contract}:{day.isoformat()}"


@dataclass(frozen=True, slots=True)
class Passage:
    """One entry or exit; ``passage_id`` is the tap id or the manual entry id."""

    passage_id: str
    direction: Direction
    at: datetime
    source: PassageSource
    gate_id: str | None = None
    guard_id: str | None = None
    note: str | None = None

    def to_doc(self) -> Doc:
        return {
            "passage_id": self.passage_id,
            "direction": self.direction.value,
            "at": self.at,
            "source": self.source.value,
            "gate_id": self.gate_id,
            "guard_id": self.guard_id,
            "note": self.note,
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> Passage:
        return cls(
            passage_id=str(doc["passage_id"]),
            direction=Direction(doc["direction"]),
            at=dt_from_doc(doc["at"]),
            source=PassageSource(doc["source"]),
            gate_id=doc.get("gate_id"),
            guard_id=doc.get("guard_id"),
            note=doc.get("note"),
        )


@dataclass(slots=True)
class AttendanceDay:
    """A student's local school day (one document per contract and day)."""

    contract: str
    school_id: str
    class_name: str
    day: date
    passages: list[Passage] = field(default_factory=list)
    late_reported_at: datetime | None = None
    missing_reported_at: datetime | None = None
    absence_reported_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: ClosedBy | None = None
    version: int = 0

    @classmethod
    def open(cls, student: Student, day: date) -> AttendanceDay:
        return cls(student.contract, student.school_id, student.class_name, day)

    @property
    def key(self) -> str:
        return day_key(self.contract, self.day)

    @property
    def entries(self) -> list[Passage]:
        return [p for p in self.passages if p.direction is Direction.IN]

    @property
    def exits(self) -> list[Passage]:
        return [p for p in self.passages if p.direction is Direction.OUT]

    @property
    def present(self) -> bool:
        """Present means at least one entry (tap or manual); an exit alone does not count."""
        return bool(self.entries)

    @property
    def first_arrival(self) -> datetime | None:
        return min((p.at for p in self.entries), default=None)

    @property
    def last_exit(self) -> datetime | None:
        return max((p.at for p in self.exits), default=None)

    @property
    def inside(self) -> bool:
        """Whether the latest passage (by time) is an entry."""
        return bool(self.passages) and self.passages[-1].direction is Direction.IN

    def inside_at(self, at: datetime) -> bool:
        """Whether the student was inside at ``at``: the latest passage not after it is an entry.

        This is what anti-passback checks, so a tap delivered late is judged against the
        passages that happened before it, not against ones recorded since.
        """
        before = [p for p in self.passages if p.at <= at]
        return bool(before) and before[-1].direction is Direction.IN

    @property
    def exits_without_entry(self) -> int:
        count, inside = 0, False
        for passage in self.passages:
            if passage.direction is Direction.IN:
                inside = True
            elif inside:
                inside = False
            else:
                count += 1
        return count

    @property
    def absence_reported(self) -> bool:
        return self.absence_reported_at is not None

    @property
    def late_reported(self) -> bool:
        return self.late_reported_at is not None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    def passage(self, passage_id: str) -> Passage | None:
        for passage in self.passages:
            if passage.passage_id == passage_id:
                return passage
        return None

    def is_late(self, schedule: SchoolSchedule) -> bool:
        """Late when the first arrival (local) is strictly after the day's first lesson start."""
        first, lesson = self.first_arrival, schedule.first_lesson_on(self.day)
        if first is None or lesson is None:
            return False
        return first > schedule.instant(self.day, lesson)

    def record(self, passage: Passage, schedule: SchoolSchedule) -> list[DomainEvent]:
        """Add a passage and return what it caused (entered/exited, late, closed).

        Idempotent on ``passage_id``: the same passage again returns ``[]``; the same id with
        other data raises :class:`IdempotencyConflict`. Late is judged on the first entry
        recorded; an earlier entry delivered afterwards does not retract a reported late.
        """
        at = require_aware(passage.at, "passage time")
        if schedule.school_day(at) != self.day:
            raise ValueError("passage belongs to another school day")
        known = self.passage(passage.passage_id)
        if known is not None:
            if known != passage:
                raise IdempotencyConflict(passage.passage_id, "passage id reused with other data")
            return []
        had_entry = self.present
        without_entry = passage.direction is Direction.OUT and not self.inside_at(at)
        self.passages.append(passage)
        self.passages.sort(key=lambda p: p.at)
        self.version += 1
        events: list[DomainEvent] = []
        if passage.direction is Direction.IN:
            events.append(
                StudentEntered(
                    passage.passage_id, self.contract, self.school_id, self.class_name, self.day,
                    at, passage.source.value, passage.gate_id,
                )
            )
            if not had_entry:
                late = self._report_late(schedule, at)
                if late is not None:
                    events.append(late)
        else:
            events.append(
                StudentExited(
                    passage.passage_id, self.contract, self.school_id, self.class_name, self.day,
                    at, passage.gate_id, without_entry,
                )
            )
            closed = self._close_after_exit(schedule, at)
            if closed is not None:
                events.append(closed)
        return events

    def _report_late(self, schedule: SchoolSchedule, arrival: datetime) -> StudentLate | None:
        lesson = schedule.first_lesson_on(self.day)
        if self.late_reported or lesson is None:
            return None
        start = schedule.instant(self.day, lesson)
        if arrival <= start:
            return None
        self.late_reported_at = arrival
        # Rounded up: anyone strictly after the bell is at least one minute late.
        minutes = math.ceil((arrival - start).total_seconds() / 60)
        return StudentLate(
            self.contract, self.school_id, self.class_name, self.day, arrival, lesson, minutes
        )

    def _close_after_exit(
        self, schedule: SchoolSchedule, at: datetime
    ) -> AttendanceDayClosed | None:
        if self.closed or self.inside or not self.present:
            return None
        last_end = schedule.last_session_end(self.day, self.class_name)
        if last_end is None or at < schedule.instant(self.day, last_end):
            return None
        return self._close(schedule, at, ClosedBy.LAST_EXIT)

    def _close(self, schedule: SchoolSchedule, at: datetime, by: ClosedBy) -> AttendanceDayClosed:
        self.closed_at = at
        self.closed_by = by
        self.version += 1
        return AttendanceDayClosed(
            self.contract, self.school_id, self.class_name, self.day, self.first_arrival,
            self.last_exit, self.is_late(schedule), by.value,
        )

    def mark_missing_at_lesson_start(
        self, schedule: SchoolSchedule, now: datetime
    ) -> StudentNotInAtLessonStart | None:
        """Report once that a lesson day had no entry when its first lesson began."""
        start = schedule.lesson_start_at(self.day)
        if self.missing_reported_at is not None or self.present or start is None:
            return None
        now_utc = require_aware(now, "now")
        if now_utc < start:
            return None
        self.missing_reported_at = now_utc
        self.version += 1
        return StudentNotInAtLessonStart(self.contract, self.school_id, self.class_name,
                                         self.day, start)

    def mark_absent(self, schedule: SchoolSchedule, now: datetime) -> StudentAbsent | None:
        """Report absence once, when a lesson day has no entry by its cut-off."""
        if self.absence_reported or self.present or not schedule.has_lessons(self.day):
            return None
        cutoff = schedule.cutoff_at(self.day)
        now_utc = require_aware(now, "now")
        if now_utc < cutoff:
            return None
        self.absence_reported_at = now_utc
        self.version += 1
        return StudentAbsent(self.contract, self.school_id, self.class_name, self.day, cutoff)

    def close_at_end_of_day(
        self, schedule: SchoolSchedule, now: datetime
    ) -> AttendanceDayClosed | None:
        """Close a day with passages once the gates have closed (or local midnight passed)."""
        if self.closed or not self.passages:
            return None
        end = schedule.day_end_at(self.day)
        if require_aware(now, "now") < end:
            return None
        return self._close(schedule, end, ClosedBy.END_OF_DAY)

    def to_doc(self) -> Doc:
        return {
            "key": self.key,
            "contract": self.contract,
            "school_id": self.school_id,
            "class_name": self.class_name,
            "day": date_to_doc(self.day),
            "passages": [p.to_doc() for p in self.passages],
            "late_reported_at": self.late_reported_at,
            "missing_reported_at": self.missing_reported_at,
            "absence_reported_at": self.absence_reported_at,
            "closed_at": self.closed_at,
            "closed_by": None if self.closed_by is None else self.closed_by.value,
            "version": self.version,
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> AttendanceDay:
        closed_by = doc.get("closed_by")
        return cls(
            contract=str(doc["contract"]),
            school_id=str(doc["school_id"]),
            class_name=str(doc["class_name"]),
            day=date_from_doc(doc["day"]),
            passages=sorted((Passage.from_doc(p) for p in doc["passages"]), key=lambda p: p.at),
            late_reported_at=opt_dt_from_doc(doc.get("late_reported_at")),
            missing_reported_at=opt_dt_from_doc(doc.get("missing_reported_at")),
            absence_reported_at=opt_dt_from_doc(doc.get("absence_reported_at")),
            closed_at=opt_dt_from_doc(doc.get("closed_at")),
            closed_by=None if closed_by is None else ClosedBy(closed_by),
            version=int(doc["version"]),
        )


@dataclass(frozen=True, slots=True)
class ManualEntry:
    """Guard command: let a student in without a card; ``entry_id`` is the idempotency key."""

    entry_id: str
    school_id: str
    contract: str
    guard_id: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AttendanceOutcome:
    """Result of one attendance operation: the day to persist (None if untouched) and events."""

    day: AttendanceDay | None
    events: tuple[DomainEvent, ...]
    replayed: bool = False


def record_manual_entry(
    day: AttendanceDay | None,
    schedule: SchoolSchedule,
    student: Student | None,
    command: ManualEntry,
    now: datetime,
) -> AttendanceOutcome:
    """Record a guard-admitted entry; it counts for attendance and anti-passback like a tap.

    The guard's decision is final: no schedule or anti-passback check applies. ``day`` must be the
    record for the student and the local day of ``command.at`` (or None if there is none yet).
    A replay of the same ``entry_id`` returns no events; reuse with other data is a conflict.
    """
    require_text(command.entry_id, "entry_id")
    require_text(command.guard_id, "guard_id")
    if student is None:
        raise ManualEntryRejected(ValidationReason.UNKNOWN_STUDENT, command.contract)
    if student.contract != command.contract:
        raise ValueError("student does not match the command")
    if student.school_id != command.school_id or schedule.school_id != command.school_id:
        raise ManualEntryRejected(ValidationReason.OTHER_SCHOOL, command.contract)
    passage = Passage(
        passage_id=command.entry_id,
        direction=Direction.IN,
        at=require_aware(command.at, "at"),
        source=PassageSource.MANUAL,
        guard_id=command.guard_id,
        note=command.reason,
    )
    if day is not None and (known := day.passage(command.entry_id)) is not None:
        if known != passage:
            raise IdempotencyConflict(command.entry_id, "manual entry id reused with other data")
        return AttendanceOutcome(day, (), replayed=True)
    at = check_event_time(
        command.at, now, max_skew=MANUAL_MAX_SKEW, max_age=MANUAL_MAX_AGE, field="at"
    )
    local_day = schedule.school_day(at)
    if day is None:
        day = AttendanceDay.open(student, local_day)
    elif day.contract != student.contract or day.day != local_day:
        raise ValueError("the loaded day record is not the student's record for that day")
    caused = day.record(passage, schedule)
    audit = ManualEntryRecorded(
        command.entry_id, student.contract, student.school_id, day.class_name, local_day, at,
        command.guard_id, command.reason,
    )
    return AttendanceOutcome(day, (audit, *caused))


@dataclass(frozen=True, slots=True)
class SweepOutcome:
    """Day records created or changed by a periodic sweep, and the events they emitted."""

    days: tuple[AttendanceDay, ...]
    events: tuple[DomainEvent, ...]


def detect_absences(
    schedule: SchoolSchedule,
    students: Iterable[Student],
    days: Mapping[str, AttendanceDay],
    day: date,
    now: datetime,
) -> SweepOutcome:
    """Mark every student of the school with no entry on ``day`` by its cut-off as absent.

    Called from a periodic tick; safe to call any number of times: the absence marker on the day
    record makes the event once-only, and before the cut-off (or on a holiday, or a day without
    lessons) nothing happens. ``days`` maps :func:`day_key` to the records that exist; a missing
    record is created so the marker can be stored. Students of other schools are ignored.
    """
    if not schedule.has_lessons(day) or require_aware(now, "now") < schedule.cutoff_at(day):
        return SweepOutcome((), ())
    return _mark_roster(schedule, students, days, day,
                        lambda record: record.mark_absent(schedule, now))


def detect_missing_at_lesson_start(
    schedule: SchoolSchedule,
    students: Iterable[Student],
    days: Mapping[str, AttendanceDay],
    day: date,
    now: datetime,
) -> SweepOutcome:
    """Report every student of the school with no entry on ``day`` when the first lesson began,
    once per student and day (same rules as :func:`detect_absences`)."""
    start = schedule.lesson_start_at(day)
    if start is None or require_aware(now, "now") < start:
        return SweepOutcome((), ())
    return _mark_roster(schedule, students, days, day,
                        lambda record: record.mark_missing_at_lesson_start(schedule, now))


def _mark_roster(
    schedule: SchoolSchedule,
    students: Iterable[Student],
    days: Mapping[str, AttendanceDay],
    day: date,
    mark: Callable[[AttendanceDay], DomainEvent | None],
) -> SweepOutcome:
    changed: list[AttendanceDay] = []
    events: list[DomainEvent] = []
    for student in students:
        if student.school_id != schedule.school_id:
            continue
        record = days.get(day_key(student.contract, day)) or AttendanceDay.open(student, day)
        event = mark(record)
        if event is not None:
            changed.append(record)
            events.append(event)
    return SweepOutcome(tuple(changed), tuple(events))


def close_finished_days(
    schedule: SchoolSchedule, days: Iterable[AttendanceDay], now: datetime
) -> SweepOutcome:
    """Close every open day record whose day has ended (gates closed); once per record."""
    changed: list[AttendanceDay] = []
    events: list[DomainEvent] = []
    for record in days:
        event = record.close_at_end_of_day(schedule, now)
        if event is not None:
            changed.append(record)
            events.append(event)
    return SweepOutcome(tuple(changed), tuple(events))


def local_time_of(schedule: SchoolSchedule, at: datetime | None) -> time | None:
    return None if at is None else schedule.local(at).time().replace(microsecond=0)
